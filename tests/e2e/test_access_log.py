"""A server run with OPZ_LOG_FORMAT=json and OPZ_ACCESS_LOG=true logs one JSON object per line,
its access log a line per answered request that names the route and never its query string."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
from support import Server


def test_json_logs_with_an_access_line_per_request(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"OPZ_LOG_FORMAT": "json", "OPZ_ACCESS_LOG": "true"}).start()
    try:
        server.client("personalize").list_dataset_groups()
        assert httpx.get(server.url + "/health?userId=secret-user").status_code == 200
    finally:
        server.stop()
    lines = [line for line in server.output(tail=None).splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # every line, uvicorn's included, is JSON
    access = [d for d in docs if d["logger"] == "opz.access"]
    listed = next(d for d in access if d["operation"] == "ListDatasetGroups")
    assert listed["status"] == 200 and listed["method"] == "POST" and listed["duration_ms"] > 0
    health = [d for d in access if d["path"] == "/health"]
    assert health and all(d["status"] == 200 for d in health)
    assert "secret-user" not in server.output(tail=None)
    assert any(d["logger"].startswith("uvicorn") for d in docs)
