"""Every control-plane handler module: importing them registers their operations in
control_api.OPERATIONS (the app and `personalize api coverage` both import this)."""
from __future__ import annotations

from serving import campaigns_api, datasets_api, filters_api, solutions_api

MODULES = (datasets_api, solutions_api, campaigns_api, filters_api)
