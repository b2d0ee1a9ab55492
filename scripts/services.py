#!/usr/bin/env python3
"""Real Apache Kafka (KRaft, from Maven Central jars), Debian's redis-server and postgresql,
and an S3-compatible object store (Versity's S3 gateway, built from the Go module proxy) on loopback.

No Docker engine runs on our machines, so the project starts the real services itself:

    scripts/services.py start [--nodes 3] [--kafka-port 9092] [--redis-port 6379] [--s3-port 7070]
                              [--postgres-port 5432]
    scripts/services.py env      # prints OPZ_TEST_KAFKA_BOOTSTRAP=..., OPZ_TEST_REDIS_URL=...,
                                 # OPZ_TEST_DATABASE_URL=..., OPZ_TEST_S3_*
    scripts/services.py stop

`start` returns once the broker answers metadata requests, Redis answers PING, PostgreSQL
answers a query and the object store answers ListBuckets; the
processes outlive this command (own session) and are stopped by PID, never by name.
Started again while they run, it starts only what is missing (PostgreSQL beside services
started before it was one of them). State (ports, PIDs, log dirs) lives under
`.cache/services/` (git-ignored); PostgreSQL's cluster in a temporary folder of its own.
Tests import `KafkaCluster` and `RedisServer` from here for fault tests that need their own
instances.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / ".cache" / "services"
# 3.9.x: accepts every old protocol version (KIP-896 removed many in 4.0), and it is the
# line faust-streaming's broker CI ran; 4.x works too (KAFKA_VERSION=4.1.2).
KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "3.9.1")

LOG4J1 = """log4j.rootLogger=WARN, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""
LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = OUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_libs(version: str = KAFKA_VERSION) -> Path:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "kafka_jars.sh"), version],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def kafka_uuid() -> str:
    """Kafka's Uuid.randomUuid(): 16 random bytes, URL-safe base64, never starting with '-'."""
    while True:
        s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not s.startswith("-"):
            return s


def _wait_port(port: int, proc: subprocess.Popen, deadline: float, what: str, log: Path) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited rc={proc.returncode}\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{what}: port {port} never opened\n{tail(log)}")


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _stop_pid(pid: int, timeout: float = 20.0, sig: signal.Signals = signal.SIGTERM) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if _is_zombie(pid):
                return
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _terminate(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM a child of ours, SIGKILL it if it outlives `timeout`."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return False


class KafkaCluster:
    """1 or 3 combined broker+controller nodes with static voters on 127.0.0.1."""

    def __init__(self, nodes: int = 1, *, base_dir: Path, client_ports: list[int] | None = None,
                 controller_ports: list[int] | None = None, heap: str = "512m",
                 partitions: int = 4, version: str = KAFKA_VERSION,
                 extra: dict[str, str] | None = None) -> None:
        self.n, self.version, self.heap, self.partitions = nodes, version, heap, partitions
        self.major = int(version.split(".")[0])
        self.extra = extra or {}
        self.base = Path(base_dir)
        self.client_ports = client_ports or [free_port() for _ in range(nodes)]
        self.controller_ports = controller_ports or [free_port() for _ in range(nodes)]
        self.cluster_id = kafka_uuid()
        self.procs: list[subprocess.Popen | None] = [None] * nodes
        self.libs: Path | None = None

    @property
    def bootstrap(self) -> str:
        """aiokafka form: host:port,host:port."""
        return ",".join(f"127.0.0.1:{p}" for p in self.client_ports)

    def node_dir(self, i: int) -> Path:
        return self.base / f"node{i + 1}"

    def log_path(self, i: int) -> Path:
        return self.node_dir(i) / "broker.log"

    def _props(self, i: int) -> str:
        rf, isr = min(3, self.n), (2 if self.n >= 3 else 1)
        voters = ",".join(f"{j + 1}@127.0.0.1:{p}" for j, p in enumerate(self.controller_ports))
        cp, kp = self.client_ports[i], self.controller_ports[i]
        p = {
            "process.roles": "broker,controller", "node.id": str(i + 1),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{cp},CONTROLLER://127.0.0.1:{kp}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{cp}",
            "inter.broker.listener.name": "PLAINTEXT", "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.node_dir(i) / "data"),
            "num.partitions": str(self.partitions),
            "default.replication.factor": str(rf), "min.insync.replicas": str(isr),
            "offsets.topic.replication.factor": str(rf), "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(isr),
            "transaction.state.log.num.partitions": "5",
            "group.initial.rebalance.delay.ms": "0", "auto.create.topics.enable": "true",
            "delete.topic.enable": "true", "num.network.threads": "2", "num.io.threads": "2",
            "background.threads": "2", "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.dedupe.buffer.size": "2097152", "log.initial.task.delay.ms": "100",
        }
        if self.n > 1:  # fault tests: notice a dead broker in seconds, not 9 s
            p.update({"broker.heartbeat.interval.ms": "500", "broker.session.timeout.ms": "3000"})
        if self.major >= 4:
            p["share.coordinator.state.topic.replication.factor"] = str(rf)
            p["share.coordinator.state.topic.min.isr"] = str(isr)
        p.update(self.extra)
        return "".join(f"{k}={v}\n" for k, v in p.items())

    def _java(self, i: int, main: str, *args: str) -> list[str]:
        d = self.node_dir(i)
        if self.major >= 4:
            (d / "log4j2.properties").write_text(LOG4J2)
            logopt = f"-Dlog4j2.configurationFile={d / 'log4j2.properties'}"
        else:
            (d / "log4j.properties").write_text(LOG4J1)
            logopt = f"-Dlog4j.configuration=file:{d / 'log4j.properties'}"
        return ["java", "-Xms256m", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:-UsePerfData", "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
                f"-Djava.io.tmpdir={d}", logopt, "-cp", f"{self.libs}/*", main, *args]

    def start(self, timeout: float = 180.0) -> None:
        self.libs = kafka_libs(self.version)
        for i in range(self.n):  # same cluster id on every node; static voters => no --standalone
            d = self.node_dir(i)
            (d / "data").mkdir(parents=True, exist_ok=True)
            (d / "server.properties").write_text(self._props(i))
            subprocess.run(self._java(i, "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                                      "-c", str(d / "server.properties"), "--ignore-formatted"),
                           check=True, stdout=subprocess.DEVNULL)
        for i in range(self.n):  # all at once: no client port opens before a controller majority
            self.start_node(i)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        for i in range(self.n):  # a fixed port opens only once the broker is unfenced
            proc = self.procs[i]
            assert proc is not None
            _wait_port(self.client_ports[i], proc, deadline, f"kafka node {i + 1}", self.log_path(i))
        asyncio.run(self._wait_brokers(deadline))

    def start_node(self, i: int) -> None:
        """Start (or restart after a kill, without re-formatting) node i."""
        with open(self.log_path(i), "ab") as log:
            self.procs[i] = subprocess.Popen(
                self._java(i, "kafka.Kafka", str(self.node_dir(i) / "server.properties")),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    async def _wait_brokers(self, deadline: float) -> None:
        from aiokafka.admin import AIOKafkaAdminClient
        last: object = None
        while time.monotonic() < deadline:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            try:
                await admin.start()
                meta = await admin.describe_cluster()
                if len(meta["brokers"]) >= self.n:
                    return
                last = meta
            except Exception as exc:  # noqa: BLE001 - retry until the deadline
                last = exc
            finally:
                await admin.close()
            await asyncio.sleep(0.5)
        raise TimeoutError(f"kafka cluster not ready: {last!r}")

    def stop_node(self, i: int, graceful: bool = True, timeout: float = 20.0) -> None:
        proc = self.procs[i]
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:  # controlled shutdown waits forever without a quorum
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        for p in self.procs:  # signal all first, so no node waits on the others
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for i in range(self.n):
            self.stop_node(i)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None]


class RedisServer:
    """Debian's redis-server, loopback only, no persistence (tests rebuild state themselves)."""

    def __init__(self, *, base_dir: Path, port: int | None = None) -> None:
        self.base = Path(base_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.base / "redis.log"

    def start(self, timeout: float = 30.0) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(exe).exists():
            raise RuntimeError("redis-server is not installed: run `make services` or "
                               "`apt-get install -y redis-server`")
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.base), "--protected-mode", "yes"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.port, self.proc, time.monotonic() + timeout, "redis-server", self.log_path)

    def stop(self) -> None:
        _terminate(self.proc)


def postgres_binary(name: str) -> Path:
    """initdb or postgres: on PATH, else the newest of Debian's /usr/lib/postgresql/<major>/bin."""
    if found := shutil.which(name):
        return Path(found)
    debian = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                    key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not debian:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: run scripts/system_deps.sh "
                           "(or `apt-get install -y postgresql`)")
    return debian[-1]


class PostgresServer:
    """Debian's PostgreSQL: a throwaway cluster (initdb) on 127.0.0.1 only, trusting loopback
    connections, without fsync (tests make their own databases and drop them).

    PostgreSQL refuses to run as root, so under root it runs as the `postgres` user that
    Debian's package creates, in a temporary folder that user owns (a folder under ours would
    need every parent opened to it)."""

    USER = "opz"  # the cluster's superuser

    def __init__(self, *, base_dir: Path | None = None, port: int | None = None) -> None:
        self.base = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="opz-postgres-"))
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.run_as = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self.base / "postgres.log"

    def start(self, timeout: float = 60.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            shutil.chown(self.base, self.run_as, self.run_as)
        data = self.base / "data"
        subprocess.run([str(postgres_binary("initdb")), "-D", str(data), "-U", self.USER, "--auth=trust",
                        "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                       check=True, stdout=subprocess.DEVNULL, cwd=self.base, **self._as_user())
        # loopback only, and trusted only there (initdb's own file also trusts the socket)
        (data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        settings = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": "",
                    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                    "max_connections": "200", "shared_buffers": "32MB"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(postgres_binary("postgres")), "-D", str(data),
                 *(arg for k, v in settings.items() for arg in ("-c", f"{k}={v}"))],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.base, **self._as_user())
        deadline = time.monotonic() + timeout
        _wait_port(self.port, self.proc, deadline, "postgres", self.log_path)
        self._wait_query(deadline)

    def _as_user(self) -> dict:
        """Popen's arguments that drop root: that user's uid and group, none of root's groups."""
        return {"user": self.run_as, "group": self.run_as, "extra_groups": []} if self.run_as else {}

    def _wait_query(self, deadline: float) -> None:
        """The port opens before recovery ends ("the database system is starting up")."""
        import psycopg
        last: object = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.2)
        raise TimeoutError(f"postgres never answered a query: {last!r}\n{tail(self.log_path)}")

    def stop(self) -> None:
        """A fast shutdown (SIGINT): SIGTERM's smart one waits for every client to leave."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


class S3Server:
    """Versity's S3 gateway over a folder: the real S3 API (SigV4, multipart, listings) on loopback.

    One root key pair, made here, is the only identity; tests read it from `env`."""

    def __init__(self, *, base_dir: Path, port: int | None = None) -> None:
        self.base = Path(base_dir)
        self.port = port or free_port()
        self.access_key = "opz" + uuid.uuid4().hex[:16]
        self.secret_key = base64.urlsafe_b64encode(os.urandom(30)).decode()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.base / "s3.log"

    def start(self, timeout: float = 60.0) -> None:
        exe = subprocess.run(["bash", str(ROOT / "scripts" / "s3_server.sh")], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
        (self.base / "data").mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ROOT_ACCESS_KEY_ID": self.access_key, "ROOT_SECRET_ACCESS_KEY": self.secret_key}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [exe, "--port", f"127.0.0.1:{self.port}", "--region", "us-east-1", "--quiet",
                 "posix", str(self.base / "data")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        _wait_port(self.port, self.proc, deadline, "versitygw", self.log_path)
        self._wait_api(deadline)

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def _wait_api(self, deadline: float) -> None:
        last: object = None
        while time.monotonic() < deadline:
            try:
                self.client().list_buckets()
                return
            except Exception as exc:  # noqa: BLE001 - retry until the deadline
                last = exc
                time.sleep(0.2)
        raise TimeoutError(f"versitygw never answered ListBuckets: {last!r}\n{tail(self.log_path)}")

    def stop(self) -> None:
        _terminate(self.proc)


# ---- CLI: long-lived services for `make test` and the README's distributed mode ----

def _state_file() -> Path:
    return STATE_DIR / "state.json"


def _load_state() -> dict | None:
    f = _state_file()
    return json.loads(f.read_text()) if f.exists() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def _save_state(state: dict) -> None:
    _state_file().write_text(json.dumps(state))
    _state_file().chmod(0o600)  # it holds the object store's root key


def _postgres_running(state: dict) -> bool:
    return "postgres" in state and _alive(state["postgres"]["pid"])


def _start_postgres(port: int | None) -> dict:
    """PostgreSQL as `state["postgres"]`: its URL, and its PID and folder for `stop`."""
    postgres = PostgresServer(port=port)
    try:
        postgres.start()
    except BaseException:
        postgres.stop()
        raise
    return {"url": postgres.url, "pid": postgres.proc.pid, "dir": str(postgres.base)}  # type: ignore[union-attr]


def _stop_postgres(state: dict) -> None:
    if "postgres" in state:
        _stop_pid(state["postgres"]["pid"], sig=signal.SIGINT)  # fast shutdown: no wait for clients
        shutil.rmtree(state["postgres"]["dir"], ignore_errors=True)


def cmd_start(args: argparse.Namespace) -> int:
    state = _load_state()
    if state and all(_alive(p) for p in state["pids"]):
        if not _postgres_running(state):  # started before PostgreSQL was one of them: add it alone
            t0 = time.monotonic()
            state["postgres"] = _start_postgres(args.postgres_port)
            _save_state(state)
            print(f"postgres at {state['postgres']['url']} ready in {time.monotonic() - t0:.1f}s, beside "
                  "the services already running", file=sys.stderr)
            return 0
        print(f"services already running: {state['kafka']} {state['redis']} {state['postgres']['url']}",
              file=sys.stderr)
        return 0
    if state:
        cmd_stop(args)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=STATE_DIR))
    t0 = time.monotonic()
    redis = RedisServer(base_dir=run_dir / "redis", port=args.redis_port)
    redis.start()
    kports = [args.kafka_port] if args.kafka_port and args.nodes == 1 else None
    kafka = KafkaCluster(args.nodes, base_dir=run_dir / "kafka", client_ports=kports)
    s3 = S3Server(base_dir=run_dir / "s3", port=args.s3_port)
    try:
        kafka.start()
        s3.start()
        postgres = _start_postgres(args.postgres_port)
    except Exception:
        redis.stop()
        kafka.stop()
        s3.stop()
        raise
    state = {"kafka": kafka.bootstrap, "redis": redis.url, "run_dir": str(run_dir),
             "s3": {"endpoint": s3.endpoint, "access_key": s3.access_key, "secret_key": s3.secret_key},
             "postgres": postgres,
             "pids": [*kafka.pids, redis.proc.pid, s3.proc.pid]}  # type: ignore[union-attr]
    _save_state(state)
    print(f"kafka {KAFKA_VERSION} ({args.nodes} node) at {kafka.bootstrap}, redis at {redis.url}, "
          f"postgres at {postgres['url']}, s3 at {s3.endpoint} ready in {time.monotonic() - t0:.1f}s",
          file=sys.stderr)
    return 0


def cmd_env(_: argparse.Namespace) -> int:
    state = _load_state()
    if not state:
        print("no services: run scripts/services.py start", file=sys.stderr)
        return 1
    print(f"OPZ_TEST_KAFKA_BOOTSTRAP={state['kafka']}")
    print(f"OPZ_TEST_REDIS_URL={state['redis']}")
    if "postgres" in state:
        print(f"OPZ_TEST_DATABASE_URL={state['postgres']['url']}")
    print(f"OPZ_TEST_S3_ENDPOINT={state['s3']['endpoint']}")
    print(f"OPZ_TEST_S3_ACCESS_KEY_ID={state['s3']['access_key']}")
    print(f"OPZ_TEST_S3_SECRET_ACCESS_KEY={state['s3']['secret_key']}")
    return 0


def cmd_stop(_: argparse.Namespace) -> int:
    state = _load_state()
    if not state:
        return 0
    for pid in state["pids"]:
        _stop_pid(pid)
    _stop_postgres(state)
    shutil.rmtree(state["run_dir"], ignore_errors=True)
    _state_file().unlink(missing_ok=True)
    print("services stopped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="start Kafka (KRaft), Redis, PostgreSQL and S3, wait until ready")
    start.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    start.add_argument("--kafka-port", type=int, default=None)
    start.add_argument("--redis-port", type=int, default=None)
    start.add_argument("--s3-port", type=int, default=None)
    start.add_argument("--postgres-port", type=int, default=None)
    start.set_defaults(fn=cmd_start)
    sub.add_parser("env", help="print the services' addresses as env lines").set_defaults(fn=cmd_env)
    sub.add_parser("stop", help="stop what `start` started").set_defaults(fn=cmd_stop)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
