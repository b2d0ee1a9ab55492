"""GET /ready: 200 while the event log, the session store and the control plane answer, 503
naming the one that does not (never its address), while /health stays 200: a load balancer
stops sending PutEvents to an API that could not store them, and nothing restarts it."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
from services import RedisServer
from support import Server


def test_an_embedded_server_is_ready(embedded_server: Server) -> None:
    assert httpx.get(embedded_server.url + "/ready").json() == {"ready": True, "unavailable": []}


def test_readiness_follows_the_session_store_down_and_back(tmp_path: Path, unique: str,
                                                            kafka_bootstrap: str) -> None:
    redis = RedisServer(base_dir=tmp_path / "redis")  # a Redis of its own: this test stops it
    redis.start()
    server = Server(tmp_path / "data", env={"OPZ_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                                            "OPZ_REDIS_URL": redis.url, "OPZ_REDIS_PREFIX": unique}).start()
    try:
        assert httpx.get(server.url + "/ready").json() == {"ready": True, "unavailable": []}
        redis.stop()
        answer = httpx.get(server.url + "/ready", timeout=10)
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"ready": False, "unavailable": ["session store"]}
        assert str(redis.port) not in answer.text
        assert httpx.get(server.url + "/health").status_code == 200  # alive all the same
        redis.start()
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "still not ready with Redis back"
            time.sleep(0.2)
    finally:
        server.stop()
        redis.stop()
