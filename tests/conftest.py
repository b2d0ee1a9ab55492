"""Fixtures shared by every test: real services, unique names, the embedded server.

Kafka and Redis come from testcontainers when a Docker engine is reachable, else from
`scripts/services.py start` (what `make test` runs; it exports OPZ_TEST_KAFKA_BOOTSTRAP and
OPZ_TEST_REDIS_URL). Neither available = the test FAILS naming the script; never a skip,
never a fake.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
DATASETS = (ROOT / ".." / "shared" / "datasets").resolve()
NO_SERVICE = ("{what} is not available: run `scripts/services.py start` and export "
              "`scripts/services.py env` (or `make test`, which does both), or make a Docker "
              "engine reachable for testcontainers")


def _docker_reachable() -> bool:
    try:
        import docker
        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a real Kafka broker."""
    if addr := os.environ.get("OPZ_TEST_KAFKA_BOOTSTRAP"):
        yield addr
    elif _docker_reachable():
        from testcontainers.kafka import KafkaContainer
        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        pytest.fail(NO_SERVICE.format(what="Kafka"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """redis:// URL of a real Redis server."""
    if url := os.environ.get("OPZ_TEST_REDIS_URL"):
        yield url
    elif _docker_reachable():
        from testcontainers.redis import RedisContainer
        with RedisContainer() as r:
            yield f"redis://{r.get_container_host_ip()}:{r.get_exposed_port(6379)}/0"
    else:
        pytest.fail(NO_SERVICE.format(what="Redis"))


@pytest.fixture
def unique() -> str:
    """A fresh name per test: topics, consumer groups, dataset groups and key prefixes."""
    return "t" + uuid.uuid4().hex[:12]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`personalize serve` as a user runs it: a real process on a real port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        import httpx
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "serving.cli", "serve", "--data-dir", str(self.data_dir),
                 "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited rc={self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"server not healthy in {timeout}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, service: str):  # type: ignore[no-untyped-def]
        import boto3
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data").start()
    yield server
    server.stop()
