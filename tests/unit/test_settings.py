"""Settings refuse combinations that would only fail later, at the first PutEvents."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from stream.settings import Settings


def test_min_insync_replicas_cannot_exceed_the_replication_factor() -> None:
    with pytest.raises(ValidationError, match="MIN_INSYNC_REPLICAS"):
        Settings(kafka_replication_factor=1, kafka_min_insync_replicas=2)
    settings = Settings(kafka_replication_factor=3, kafka_min_insync_replicas=2)
    assert settings.kafka_min_insync_replicas == 2
    assert Settings().kafka_min_insync_replicas is None  # the brokers' default
