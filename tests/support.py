"""Test helpers importable from any test (pytest puts tests/ on sys.path): the real server."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
# ../shared/datasets beside the checkout (its usual place), or OPZ_TEST_DATASETS / the
# workspace's copy when the clone lives elsewhere
DATASETS = next((p.resolve() for p in (
    Path(os.environ.get("OPZ_TEST_DATASETS", ROOT / ".." / "shared" / "datasets")),
    ROOT / ".." / "shared" / "datasets", Path("/work/shared/datasets")) if p.is_dir()),
    (ROOT / ".." / "shared" / "datasets").resolve())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A real child process of ours: stop it as an operator would, or kill it as a crash."""

    proc: subprocess.Popen[bytes] | None = None
    log: Path

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self, tail: int | None = 5000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-tail:] if tail else text


class Server(Process):
    """`personalize serve` as a user runs it: a real process on a real port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir, self.port = data_dir, free_port()
        # jobs may read and write beside the data dir (the tests' files) and the shared datasets
        roots = os.pathsep.join(map(str, (data_dir.parent, DATASETS)))
        self.env = {**os.environ, "OPZ_FILE_ROOTS": roots, **(env or {})}
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

    def client(self, service: str, key: dict[str, str] | None = None,  # type: ignore[no-untyped-def]
               region: str = "us-east-1"):
        """A boto3 client of ours; `key` (from `create_key`) signs as that key's account, for
        `region` (what a client configured for that region signs with)."""
        import boto3
        return boto3.client(service, endpoint_url=self.url, region_name=region,
                            aws_access_key_id=key["accessKeyId"] if key else "test",
                            aws_secret_access_key=key["secretAccessKey"] if key else "test")

    def keys(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`personalize keys ARGS` on this server's data dir, as its operator runs it."""
        return subprocess.run([sys.executable, "-m", "serving.cli", "keys", *args, "--data-dir",
                               str(self.data_dir)], capture_output=True, text=True, env=self.env, timeout=60)

    def create_key(self, account: str) -> dict[str, str]:
        import json
        done = self.keys("create", "--account", account, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@contextmanager
def two_hosts(tmp_path: Path, env: dict[str, str],
              second_env: dict[str, str] | None = None) -> Iterator[tuple[Server, Server]]:
    """Two servers as on two hosts: a data dir each (under tmp_path/a and /b), sharing only
    what `env` names (a database, a bucket)."""
    for host in ("a", "b"):
        (tmp_path / host).mkdir(exist_ok=True)
    first = Server(tmp_path / "a" / "data", env=env).start()
    try:
        second = Server(tmp_path / "b" / "data", env=second_env or env).start()
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


class Worker(Process):
    """`personalize stream worker` as a real process."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.log = log_dir / f"worker-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        """Its Prometheus endpoint (OPZ_METRICS_PORT must be in its env)."""
        return f"http://127.0.0.1:{self.env['OPZ_METRICS_PORT']}"

    def start(self) -> Worker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "serving.cli", "stream", "worker"],
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self


class Trainer(Process):
    """`personalize trainer` as a real process, on the data dir of API servers started with
    OPZ_TRAIN_IN_SERVER=false."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, schedule: bool = True) -> None:
        self.data_dir, self.schedule = data_dir, schedule
        roots = os.pathsep.join(map(str, (data_dir.parent, DATASETS)))
        self.env = {**os.environ, "OPZ_FILE_ROOTS": roots, **(env or {})}
        self.log = data_dir.parent / f"trainer-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Trainer:
        """Returns once it says it is ready (it has no port to probe)."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "serving.cli", "trainer", "--data-dir", str(self.data_dir),
                 *(["--schedule"] if self.schedule else [])],
                stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while "trainer ready" not in self.output(tail=None):
            if self.proc.poll() is not None:
                raise RuntimeError(f"trainer exited rc={self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"trainer not ready in {timeout}s:\n{self.output()}")
            time.sleep(0.1)
        return self


def consumer_lag(metrics_url: str, topic: str) -> dict[int, float] | None:
    """A worker's opz_stream_consumer_lag of `topic`, by partition: the partitions it owns
    now. None while its metrics port is closed (starting, or killed)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(metrics_url + "/metrics", timeout=5).text
    except httpx.TransportError:
        return None
    return {int(s.labels["partition"]): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "opz_stream_consumer_lag" and s.labels["topic"] == topic}


def sent_item(n: int) -> str:
    """The item of a user's n-th event from `send_events`: the expected history order."""
    return f"item{n % 97}"


async def send_events(urls: str | Sequence[str], tracking_id: str, *, users: int, per_user: int,
                      concurrency: int = 16, prefix: str = "u", deadline_s: float = 300) -> list[str]:
    """PutEvents over HTTP like many browsers at once: batches of 10, one user per call.

    Each user's calls go one after another, as its browser sends them, so every user's
    events reach the log in the order sent; with several URLs (API processes behind a load
    balancer) a user's successive calls alternate between them. Retries a call on 503, a
    ThrottlingException (over the tracker's rate) or a broken connection with the same body
    (same eventIds), as the SDKs do, so server-side dedupe makes the retry safe; a broken
    connection's retry goes to the next URL, as a load balancer sends it past a dead process.
    Returns the accepted ids.
    """
    import asyncio

    import httpx

    urls = [urls] if isinstance(urls, str) else list(urls)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for u in range(users):
        queue.put_nowait(u)
    accepted: list[str] = []
    stop_at = time.monotonic() + deadline_s

    async def put(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> None:
        while True:
            assert time.monotonic() < stop_at, "gave up retrying"
            try:
                r = await http.post(url + "/events", json=body)
            except httpx.TransportError:
                url = urls[(urls.index(url) + 1) % len(urls)]
                await asyncio.sleep(0.2)
                continue
            if r.status_code == 200:
                return
            throttled = r.status_code == 400 and r.json().get("__type") == "ThrottlingException"
            assert r.status_code == 503 or throttled, (r.status_code, r.text)
            await asyncio.sleep(0.2)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            u = queue.get_nowait()
            user = f"{prefix}{u}"
            for b in range(per_user // 10):
                ids = [f"{user}-{b * 10 + i}" for i in range(10)]
                await put(http, urls[(u + b) % len(urls)], {
                    "trackingId": tracking_id, "userId": user, "sessionId": f"s-{user}",
                    "eventList": [{"eventId": i, "eventType": "click", "itemId": sent_item(b * 10 + k),
                                   "sentAt": 1_700_000_000 + b} for k, i in enumerate(ids)]})
                accepted.extend(ids)

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return accepted


def api_stack(request: Any, tmp_path: Path, unique: str, distributed: bool) -> Iterator[Server]:
    """The API (a fixture's body); distributed, against the session's Kafka and Redis with a
    stream worker sharing its data dir (session state, dataset writer)."""
    data = tmp_path / "data"
    if not distributed:
        s = Server(data).start()
        yield s
        s.stop()
        return
    env = {"OPZ_KAFKA_BOOTSTRAP_SERVERS": request.getfixturevalue("kafka_bootstrap"),
           "OPZ_REDIS_URL": request.getfixturevalue("redis_url"), "OPZ_REDIS_PREFIX": unique,
           "OPZ_STREAM_APP_ID": f"{unique}-stream", "OPZ_STREAM_DATASET_GROUPS": f"{unique}.*"}
    s = Server(data, env=env).start()
    w = Worker(tmp_path, {**env, "OPZ_DATA_DIR": str(data)}).start()
    yield s
    s.stop()
    w.stop()


@dataclass(frozen=True)
class S3Service:
    """The S3-compatible store `scripts/services.py` started: its address and root key."""

    endpoint: str
    access_key: str
    secret_key: str

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach the store with the standard credential chain."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def database_of_its_own(admin_url: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of `admin_url` (a superuser's URL), as
    a URL for OPZ_DATABASE_URL; dropped afterwards, its connections with it."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(admin_url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def stored_event_ids(archive: Any, dataset_group: str) -> list[str]:
    """Every event id a PartsArchive's parts hold, repeats included (the raw rows, not a read,
    which keeps each id once), read from one commit of its manifest: a merge or a newer commit
    may delete a part between the manifest's read and the part's."""
    parts = archive.parts(dataset_group)
    return parts.snapshot(lambda manifest: [i for p in manifest.parts
                                            for i in parts.read(p.name)["event_id"].to_pylist()])


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as a CSV file whose header is the first row's keys: data a test imports."""
    import csv
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, list(rows[0]))
        out.writeheader()
        out.writerows(rows)
    return path


async def archived(data_dir: Path, events: list[Any]) -> None:
    """Events as PutEvents leaves them in the archive that training reads (embedded mode)."""
    from kernel.archive import Archive
    archive = Archive(data_dir / "archive")
    await archive.start()
    try:
        assert (await archive.add(events)).new == len(events)
    finally:
        await archive.close()
