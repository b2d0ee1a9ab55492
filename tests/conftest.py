"""Fixtures shared by every test: real services, unique names, the embedded server.

Kafka, Redis and PostgreSQL come from `scripts/services.py start` (what `make test` runs;
it exports OPZ_TEST_KAFKA_BOOTSTRAP, OPZ_TEST_REDIS_URL, OPZ_TEST_DATABASE_URL and
OPZ_TEST_S3_*, the S3-compatible store it starts), else from testcontainers when a Docker
engine is reachable. Not available = the test FAILS naming the script; never a skip, never
a fake.
"""
from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT, S3Service, Server, database_of_its_own

# The stream workers store the archive once per window (5 s by default); the tests read it, or
# train on it, right after sending, so their workers store it every 0.2 s.
os.environ.setdefault("OPZ_ARCHIVE_WINDOW_S", "0.2")

sys.path.insert(0, str(ROOT / "scripts"))
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


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """postgresql:// URL of a real PostgreSQL server, as a superuser (tests make databases)."""
    if url := os.environ.get("OPZ_TEST_DATABASE_URL"):
        yield url
    elif _docker_reachable():
        from testcontainers.community.postgres import PostgresContainer
        with PostgresContainer("postgres:15", driver=None) as pg:
            yield pg.get_connection_url()
    else:
        pytest.fail(NO_SERVICE.format(what="PostgreSQL"))


@pytest.fixture
def fresh_database(database_url: str, unique: str) -> Iterator[str]:
    """The URL of an empty database of this test's own (OPZ_DATABASE_URL), dropped after it."""
    with database_of_its_own(database_url, unique) as url:
        yield url


@pytest.fixture(scope="session")
def s3_service() -> S3Service:
    """A real S3-compatible object store (Versity's S3 gateway, from scripts/services.py)."""
    if endpoint := os.environ.get("OPZ_TEST_S3_ENDPOINT"):
        return S3Service(endpoint, os.environ["OPZ_TEST_S3_ACCESS_KEY_ID"],
                         os.environ["OPZ_TEST_S3_SECRET_ACCESS_KEY"])
    pytest.fail(NO_SERVICE.format(what="The S3-compatible store"))


@pytest.fixture(scope="module")
def bucket(s3_service: S3Service) -> str:
    """A new bucket of the S3-compatible store, one per test module."""
    name = f"opz-{uuid.uuid4().hex[:12]}"
    s3_service.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def unique() -> str:
    """A fresh name per test: topics, consumer groups, dataset groups and key prefixes."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data").start()
    yield server
    server.stop()


@pytest.fixture(params=["embedded", "kafka"])
def mode_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """A server's environment in each mode: none (embedded), or the session's Kafka and Redis."""
    if request.param == "embedded":
        return {}
    return {"OPZ_KAFKA_BOOTSTRAP_SERVERS": request.getfixturevalue("kafka_bootstrap"),
            "OPZ_REDIS_URL": request.getfixturevalue("redis_url")}
