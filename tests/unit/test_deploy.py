"""Deployment files, checked offline: Dockerfile, docker-compose.yml, k8s/, scripts/healthcheck.py.

- docker-compose.yml against the Compose Specification's JSON schema (the copy vendored in
  check-jsonschema), then what a schema cannot know: every command is a real `personalize`
  command, every OPZ_* variable a Settings field with a valid value, health checks, the object
  store and its bucket, and that the openpersonalize services share no volume.
- every Kubernetes manifest, what k8s/base and k8s/overlays/small render to (the real
  `kustomize build`, scripts/kustomize.sh) and what the Helm chart deploy/helm/openpersonalize
  renders to (the real `helm template`, scripts/helm.sh; `helm lint` too), against the
  Kubernetes API's schemas (kubernetes-validate, strict: unknown fields fail), then references
  between objects, probes and resources, and that the chart renders what the kustomizations do.
  Both tools are built once from the Go module proxy into .cache/; where they cannot be, these
  tests fail (they do not skip).
- the Dockerfile, parsed by BuildKit's own parser (the `dockerfile` package): entry points
  are `personalize` commands, the serving image has no torch, the trainer image has.
"""
from __future__ import annotations

import base64
import functools
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dockerfile
import jsonschema
import kubernetes_validate
import pytest
import yaml

from kernel.contract import events_topic
from kernel.settings import Settings
from serving.cli import build_parser
from serving.hosts import allowed_hosts

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
CHART = ROOT / "deploy/helm/openpersonalize"
sys.path.insert(0, str(ROOT / "scripts"))
import healthcheck  # noqa: E402

Doc = dict[str, Any]
Rendered = dict[str, dict[tuple[str, str], Doc]]
SETTINGS_VARS = {f"OPZ_{name.upper()}" for name in Settings.model_fields}
# what each openpersonalize process runs (the images' entry point is `personalize`)
EXPECTED = {"api": ["serve"], "stream-worker": ["stream", "worker"], "trainer": ["trainer", "--schedule"]}
K8S_VERSIONS = ["1.30", kubernetes_validate.utils.latest_version()]
# the first run builds kustomize and helm (scripts/kustomize.sh, scripts/helm.sh): minutes on
# 2 cores, within one test's setup (pytest's default timeout: 600 s)
pytestmark = pytest.mark.timeout(2400)


def parse_personalize(argv: list[str]) -> Any:
    """argv after `personalize`, parsed by the CLI's own parser (SystemExit if not a command)."""
    return build_parser().parse_args(argv)


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for var in [v for v in os.environ if v.startswith("OPZ_")]:
        monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return Settings()


def documented_settings() -> set[str]:
    """The settings docs/settings.md documents (the README links to it)."""
    return set(re.findall(r"`(OPZ_[A-Z0-9_]+)`", (ROOT / "docs" / "settings.md").read_text()))


# ---------------------------------------------------------------------------- Dockerfile

def dockerfile_stages() -> dict[str, list[Any]]:
    stages: dict[str, list[Any]] = {}
    current: list[Any] = []
    for cmd in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if cmd.cmd == "FROM":
            assert len(cmd.value) == 3 and cmd.value[1].upper() == "AS", f"unnamed stage: {cmd.original}"
            current = stages.setdefault(cmd.value[2], [cmd])
        elif stages:
            current.append(cmd)
    return stages


def stage_chain(stages: dict[str, list[Any]], name: str) -> list[str]:
    """A stage and every stage it builds FROM or COPYs --from."""
    seen: list[str] = []
    todo = [name]
    while todo:
        stage = todo.pop()
        if stage in seen or stage not in stages:
            continue
        seen.append(stage)
        for cmd in stages[stage]:
            if cmd.cmd == "FROM":
                todo.append(cmd.value[0])
            todo += [f.split("=", 1)[1] for f in cmd.flags if f.startswith("--from=")]
    return seen


def entry_argv(stages: dict[str, list[Any]], name: str) -> list[str]:
    """ENTRYPOINT + CMD of a target: inherited along FROM, the last line wins, and a new
    ENTRYPOINT drops an inherited CMD (as Docker does)."""
    lineage = [name]
    while (parent := stages[lineage[-1]][0].value[0]) in stages:
        lineage.append(parent)
    entry: list[str] = []
    cmd: list[str] = []
    for stage in reversed(lineage):
        for line in stages[stage]:
            if line.cmd in ("ENTRYPOINT", "CMD"):
                assert line.json, f"{line.original}: use the exec (JSON) form so signals reach personalize"
            if line.cmd == "ENTRYPOINT":
                entry, cmd = list(line.value), []
            elif line.cmd == "CMD":
                cmd = list(line.value)
    return entry + cmd


def run_lines(stages: dict[str, list[Any]], name: str) -> str:
    return "\n".join(c.original for s in stage_chain(stages, name) for c in stages[s] if c.cmd == "RUN")


def test_dockerfile_targets_run_personalize_commands() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "serving", "a plain `docker build .` should build the serving image"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'personalize = "serving.cli:main"' in pyproject
    for target, expected in (("serving", ["serve"]), ("trainer", ["trainer", "--schedule"])):
        argv = entry_argv(stages, target)
        assert argv[0] == "personalize", argv
        assert argv[1:] == expected
        args = parse_personalize(argv[1:])
        assert args.cmd == expected[0]
    assert parse_personalize(entry_argv(stages, "trainer")[1:]).schedule is True


def test_serving_image_has_no_torch_and_trainer_image_has_the_cpu_build() -> None:
    stages = dockerfile_stages()
    serving = run_lines(stages, "serving")
    assert "pip install" in serving
    assert "torch" not in serving and "[train]" not in serving, serving
    assert "build-trainer" not in stage_chain(stages, "serving")
    trainer = run_lines(stages, "trainer")
    assert re.search(r"pip install --index-url \S+ \"torch", trainer), trainer
    assert "download.pytorch.org/whl/cpu" in (ROOT / "Dockerfile").read_text()
    assert '".[train]"' in trainer


def test_dockerfile_base_copies_and_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and base.group(1).startswith("python:3.11-slim"), "Python 3.11, as pyproject requires"
    stages = dockerfile_stages()
    copied = {c.value[0] for s in stage_chain(stages, "serving") for c in stages[s]
              if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)}
    assert {"stream", "serving", "training", "pyproject.toml", "scripts/healthcheck.py"} <= copied
    assert any(c.cmd == "COPY" and c.value[-1] == "/usr/local/bin/opz-healthcheck"
               for s in stage_chain(stages, "serving") for c in stages[s])
    users = [c.value[0] for c in stages["serving"] + stages["trainer"] if c.cmd == "USER"]
    assert users and all(not u.startswith(("0", "root")) for u in users), "images run as a non-root user"
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("stream", "serving", "training", "scripts", "pyproject.toml", "README.md"):
        assert needed not in ignored, f".dockerignore drops {needed}, which the Dockerfile copies"
    assert ".venv" in ignored and ".git" in ignored


# ---------------------------------------------------------------------------- docker-compose

INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} and $$, as `docker compose` does
    before it validates the file."""
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if isinstance(node, str):
        return INTERPOLATION.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1)) or
                                 (m.group(2) or ""), node)
    return node


COMPOSE_SPEC = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's schema as check-jsonschema ships it (its licence sits
    beside it, vendor/licenses/LICENSE.compose-spec). Read as a data file: importing
    check_jsonschema would load its CLI, which needs a newer click than Faust allows."""
    path = Path(str(metadata.distribution("check-jsonschema").locate_file(COMPOSE_SPEC)))
    return json.loads(path.read_text())


def compose_problems(doc: Any) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), {})


def opz_services(compose: dict[str, Any]) -> dict[str, Doc]:
    """The long-running openpersonalize services (not the one-shot that runs python -c)."""
    return {name: s for name, s in compose["services"].items()
            if s.get("image", "").startswith("openpersonalize") and "entrypoint" not in s}


def one_shot(service: Doc) -> bool:
    """A job that runs once and exits: never restarted, no health check."""
    return service.get("restart") == "no" and "healthcheck" not in service


def test_compose_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_problems(compose) == []


def test_the_compose_schema_catches_mistakes(compose: dict[str, Any]) -> None:
    """The validator is live: a wrong type, an unknown key and a bad condition all fail."""
    for path, value in ((("api", "ports"), "8080:8080"),
                        (("api", "helthcheck"), {"test": ["CMD", "true"]}),
                        (("trainer", "depends_on", "api", "condition"), "service_ready")):
        broken = json.loads(json.dumps(compose))
        node = broken["services"]
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        assert compose_problems(broken), f"{path} = {value!r} passed"


def test_compose_commands_are_personalize_commands(compose: dict[str, Any]) -> None:
    services = opz_services(compose)
    assert set(services) == set(EXPECTED)
    stages = dockerfile_stages()
    for name, service in services.items():
        assert service["command"] == EXPECTED[name]
        parse_personalize(service["command"])
        target = service["build"]["target"]
        assert target == ("trainer" if name == "trainer" else "serving")
        assert entry_argv(stages, target)[0] == "personalize"
    assert services["stream-worker"]["deploy"]["replicas"] >= 2


def test_compose_settings_are_real_documented_and_valid(compose: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    documented = documented_settings()
    for name, service in opz_services(compose).items():
        env = {k: str(v) for k, v in service["environment"].items()}
        opz = {k for k in env if k.startswith("OPZ_")}
        assert opz - SETTINGS_VARS == set(), f"{name}: not a Settings field"
        assert opz - documented == set(), f"{name}: not in docs/settings.md"
        settings = settings_from(env, monkeypatch)
        assert not settings.embedded and settings.host == "0.0.0.0"
        assert settings.train_in_server is False, "the trainer service trains, not the API"
        kafka_host, kafka_port = settings.kafka_bootstrap_servers.split(":")
        kafka = compose["services"][kafka_host]["environment"]
        assert f"PLAINTEXT://{kafka_host}:{kafka_port}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
        assert settings.redis_url.startswith("redis://redis:6379/") and "redis" in compose["services"]
        assert settings.kafka_replication_factor == 1, "one broker here"
        db = urlsplit(settings.database_url.get_secret_value())
        postgres = compose["services"][db.hostname]
        assert postgres["image"].startswith("postgres:") and db.port == 5432
        assert (db.username, db.password, db.path) == (postgres["environment"]["POSTGRES_USER"],
                                                       postgres["environment"]["POSTGRES_PASSWORD"],
                                                       "/" + postgres["environment"]["POSTGRES_DB"])


def test_compose_health_checks_and_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert [name for name, s in services.items() if one_shot(s)] == ["s3-bucket"]
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert one_shot(service) or (test and test[0] in ("CMD", "CMD-SHELL")), f"{name} has no health check"
        for dep, how in service.get("depends_on", {}).items():
            if one_shot(services[dep]):
                assert how["condition"] == "service_completed_successfully", (name, dep)
            else:
                assert how["condition"] == "service_healthy" and "healthcheck" in services[dep], (name, dep)
    assert "kafka-topics.sh --bootstrap-server" in services["kafka"]["healthcheck"]["test"][1]
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    checks = {name: s["healthcheck"]["test"][1:] for name, s in opz_services(compose).items()}
    assert checks["api"] == ["opz-healthcheck", "http", "http://127.0.0.1:8080/health"]
    assert checks["stream-worker"] == ["opz-healthcheck", "worker"]
    assert checks["trainer"] == ["opz-healthcheck", "trainer"]
    for argv in checks.values():
        healthcheck_parser_accepts(argv[1:])
    assert set(services["api"]["depends_on"]) == {"kafka", "redis", "postgres", "s3-bucket"}
    assert set(services["stream-worker"]["depends_on"]) == {"kafka", "redis", "s3-bucket"}
    for name in EXPECTED:
        assert "s3-bucket" in services[name]["depends_on"], f"{name} may start before the bucket exists"
    assert set(services["s3-bucket"]["depends_on"]) == {"s3"}
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    command = services["s3"]["command"]
    health = command[command.index("--health") + 1]
    port = command[command.index("--port") + 1].rsplit(":", 1)[1]
    assert command.index("--health") < command.index("posix"), "a global flag: before the backend"
    assert services["s3"]["healthcheck"]["test"][1:] == [
        "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{health}"]


def volume_source(mount: str | Doc) -> str | None:
    """The named volume (or host path) a mount takes, None for an anonymous volume."""
    if isinstance(mount, dict):
        return mount.get("source")
    return mount.split(":", 1)[0] if ":" in mount else None


def test_compose_shares_no_volume_between_the_openpersonalize_services(compose: dict[str, Any]) -> None:
    """Distributed mode without a shared disk: /data of the API, each worker and the trainer is
    its own (anonymous) cache; no named volume is mounted by two services."""
    declared = set(compose["volumes"])
    users: dict[str, list[str]] = {}
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = volume_source(mount)
            if source is not None:
                assert source in declared, f"{name} mounts undeclared volume (or host path) {source}"
                users.setdefault(source, []).append(name)
    assert {volume: names for volume, names in users.items() if len(names) > 1} == {}, "a shared volume"
    assert set(users) == declared, "a declared volume nobody mounts"
    for name, service in opz_services(compose).items():
        data_dir = service["environment"]["OPZ_DATA_DIR"]
        assert [volume_source(m) for m in service.get("volumes", [])] in ([], [None]), name
        assert service.get("volumes", [data_dir]) == [data_dir], f"{name}: /data is an anonymous cache"
    assert users["kafka-data"] == ["kafka"] and users["postgres-data"] == ["postgres"]
    assert users["s3-data"] == ["s3"]


def test_compose_points_every_service_at_the_bucket(compose: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The API, the workers, the trainer and the bucket job: one bucket on the `s3` service,
    signed with its root credentials (compose's OPZ_S3_ACCESS_KEY / OPZ_S3_SECRET_KEY)."""
    store = compose["services"]["s3"]
    assert store["image"] == "versity/versitygw:v1.8.0"
    command = store["command"]
    backend = command.index("posix")
    (data_mount,) = store["volumes"]
    assert data_mount.split(":") == ["s3-data", command[backend + 1]], "the posix root is the volume"
    port = int(command[command.index("--port") + 1].rsplit(":", 1)[1])
    region = command[command.index("--region") + 1]
    root = store["environment"]
    assert "ports" not in store, "reachable on the compose network only"
    bucket_job = compose["services"]["s3-bucket"]
    for name, service in {**opz_services(compose), "s3-bucket": bucket_job}.items():
        env = {k: str(v) for k, v in service["environment"].items()}
        settings = settings_from(env, monkeypatch)
        assert settings.s3_bucket == "openpersonalize", name
        endpoint = urlsplit(settings.s3_endpoint_url or "")
        assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "s3", port), name
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
            root["ROOT_ACCESS_KEY_ID"], root["ROOT_SECRET_ACCESS_KEY"]), name
        assert env["AWS_REGION"] == region, name
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    moved = interpolate(raw, {"OPZ_S3_ACCESS_KEY": "AK", "OPZ_S3_SECRET_KEY": "SK"})
    assert moved["services"]["s3"]["environment"] == {"ROOT_ACCESS_KEY_ID": "AK",
                                                      "ROOT_SECRET_ACCESS_KEY": "SK"}
    for name in EXPECTED:
        env = moved["services"][name]["environment"]
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("AK", "SK"), name


class FakeS3:
    """What the bucket job calls on boto3's S3 client."""

    def __init__(self, head_error: str | None) -> None:
        self.head_error, self.created = head_error, []

    def head_bucket(self, Bucket: str) -> None:  # noqa: N803 (boto3's argument names)
        from botocore.exceptions import ClientError
        if self.head_error:
            raise ClientError({"Error": {"Code": self.head_error}}, "HeadBucket")

    def create_bucket(self, Bucket: str) -> None:  # noqa: N803
        self.created.append(Bucket)


@pytest.mark.parametrize("head_error, created", [("404", ["openpersonalize"]), (None, []), ("403", None)])
def test_compose_bucket_job_creates_the_bucket_once(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                    head_error: str | None,
                                                    created: list[str] | None) -> None:
    """The `s3-bucket` job's script, run here with a fake boto3: creates a missing bucket, leaves
    an existing one, and fails (so nothing starts) on any other error, e.g. wrong credentials."""
    import types

    from botocore.exceptions import ClientError
    job = compose["services"]["s3-bucket"]
    assert job["image"] == opz_services(compose)["api"]["image"] and job["build"]["target"] == "serving"
    python, flag, script = job["entrypoint"]
    assert (python, flag) == ("python", "-c") and "command" not in job
    fake = FakeS3(head_error)
    endpoints: list[str] = []
    boto3 = types.ModuleType("boto3")
    boto3.client = lambda service, endpoint_url: endpoints.append(endpoint_url) or fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boto3", boto3)
    for var, value in job["environment"].items():
        monkeypatch.setenv(var, str(value))
    code = compile(script, "s3-bucket", "exec")
    if created is None:
        with pytest.raises(ClientError):
            exec(code, {})
    else:
        exec(code, {})
        assert fake.created == created
    assert endpoints == [job["environment"]["OPZ_S3_ENDPOINT_URL"]]


def test_compose_kafka_is_the_tested_version_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    tested = re.search(r'KAFKA_VERSION="\$\{1:-\$\{KAFKA_VERSION:-([0-9.]+)\}\}"',
                       (ROOT / "scripts/kafka_jars.sh").read_text())
    assert tested and kafka["image"] == f"apache/kafka:{tested.group(1)}"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == set(protocols) and env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    cluster_id = env["CLUSTER_ID"]
    raw = base64.urlsafe_b64decode(cluster_id + "==")
    assert len(raw) == 16 and base64.urlsafe_b64encode(raw).decode().rstrip("=") == cluster_id


def published(service: Doc) -> list[str]:
    """The host address of each port a service publishes (the short syntax)."""
    return [p.rsplit(":", 2)[0] if p.count(":") == 2 else "" for p in service.get("ports", [])]


def test_compose_publishes_on_loopback_unless_told_otherwise(compose: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the host's loopback reaches the ports (`""` would be every interface); OPZ_BIND
    moves the API's, and the control plane answers the `api` service name too."""
    for name, service in compose["services"].items():
        assert all(host == "127.0.0.1" for host in published(service)), (name, service.get("ports"))
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert raw["services"]["api"]["ports"] == ["${OPZ_BIND:-127.0.0.1}:8080:8080"]
    everywhere = interpolate(raw, {"OPZ_BIND": "0.0.0.0"})
    assert published(everywhere["services"]["api"]) == ["0.0.0.0"]
    assert compose_problems(everywhere) == []
    api = settings_from(opz_services(compose)["api"]["environment"], monkeypatch)
    assert allowed_hosts(api.allowed_hosts, api.host) >= {"api", "localhost", "127.0.0.1"}
    assert api.cors_origins == ""


# ---------------------------------------------------------------------------- Kubernetes

def k8s_validate(doc: Doc) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def pod_templates(doc: Doc) -> list[Doc]:
    if doc["kind"] in WORKLOADS:
        return [doc["spec"]["template"]]
    if doc["kind"] == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]]
    return []


@functools.cache
def tool(script: str) -> str:
    """The real kustomize or helm: scripts/<script> builds it once from the Go module proxy into
    .cache/ and prints its path. Without Go or the proxy these tests fail, saying so."""
    try:
        built = subprocess.run([str(ROOT / "scripts" / script)], capture_output=True, text=True,
                               timeout=1100)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/{script} did not build its tool within 1100 s", pytrace=False)
    if built.returncode != 0:
        pytest.fail(f"scripts/{script} could not build its tool (it needs Go 1.26 and the Go module "
                    f"proxy, once; the binary is kept in .cache/):\n{built.stderr[-4000:]}", pytrace=False)
    return built.stdout.strip().splitlines()[-1]


def run_tool(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The tool, with Helm's config, cache and data folders in a throwaway place (nothing is
    fetched: the chart has no dependencies)."""
    home = ROOT / ".cache/helm-home"
    env = os.environ | {f"HELM_{what}_HOME": str(home / what.lower()) for what in ("CACHE", "CONFIG", "DATA")}
    return subprocess.run([tool(script), *args], capture_output=True, text=True, timeout=300, env=env)


def render(script: str, *args: str) -> list[Doc]:
    out = run_tool(script, *args)
    assert out.returncode == 0, f"{script} {' '.join(args)}:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def helm_template(*args: str) -> list[Doc]:
    """`helm template` of the chart as release `opz` in namespace openpersonalize: the names and
    the namespace k8s/base uses."""
    return render("helm.sh", "template", "opz", str(CHART), "--namespace", "openpersonalize", *args)


KUSTOMIZATIONS = ["base", "overlays/small"]
# the chart with its default values, and with values-small.yaml (k8s/overlays/small's sizes)
# plus its optional Ingress, which is off by default
HELM = {"helm": [], "helm-small": ["-f", str(CHART / "values-small.yaml"), "--set", "ingress.enabled=true"]}
RENDERINGS = KUSTOMIZATIONS + list(HELM)


def by_key(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
    keyed = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(keyed) == len(docs), "an object appears twice"
    return keyed


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    out = {name: by_key(render("kustomize.sh", "build", str(K8S / name))) for name in KUSTOMIZATIONS}
    return out | {name: by_key(helm_template(*args)) for name, args in HELM.items()}


def base_resource_files() -> list[Path]:
    listed = yaml.safe_load((K8S / "base/kustomization.yaml").read_text())["resources"]
    return [K8S / "base" / f for f in listed] + [K8S / "base/secret.example.yaml",
                                                 K8S / "base/keys-secret.example.yaml"]


@pytest.mark.parametrize("path", base_resource_files(), ids=lambda p: p.name)
def test_k8s_manifest_validates(path: Path) -> None:
    docs = load_docs(path)
    assert docs
    for doc in docs:
        k8s_validate(doc)


@pytest.mark.parametrize("overlay", RENDERINGS)
def test_k8s_rendering_validates(overlay: str, rendered: Rendered) -> None:
    docs = rendered[overlay]
    kinds = {kind for kind, _ in docs}
    assert {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    if overlay in HELM:
        # `helm install --create-namespace` makes the namespace; the Ingress is optional
        assert "Namespace" not in kinds
        assert ("Ingress" in kinds) is ("ingress.enabled=true" in HELM[overlay])
    else:
        assert {"Namespace", "Ingress"} <= kinds
    for doc in docs.values():
        k8s_validate(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "openpersonalize"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "openpersonalize"


def test_the_k8s_schemas_catch_mistakes(rendered: Rendered) -> None:
    api = rendered["base"][("Deployment", "opz-api")]
    for mutate in (lambda d: d["spec"].__setitem__("replicas", "2"),
                   lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("args", "serve"),
                   lambda d: d["spec"]["template"]["spec"].__setitem__("container", [])):
        broken = json.loads(json.dumps(api))
        mutate(broken)
        with pytest.raises(kubernetes_validate.ValidationError):
            k8s_validate(broken)


def workloads(docs: dict[tuple[str, str], Doc]) -> dict[str, Doc]:
    return {name: d for (kind, name), d in docs.items() if kind in ("Deployment", "CronJob")}


def containers(doc: Doc) -> list[Doc]:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return spec["template"]["spec"]["containers"]


def config(docs: dict[tuple[str, str], Doc]) -> dict[str, str]:
    return docs[("ConfigMap", "opz-settings")]["data"]


@pytest.mark.parametrize("overlay", RENDERINGS)
def test_k8s_workloads_run_personalize_with_real_settings(overlay: str, rendered: Rendered,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    docs = rendered[overlay]
    cfg = config(docs)
    opz = {k for k in cfg if k.startswith("OPZ_")}
    assert set(cfg) - opz == {"AWS_REGION"}, "besides OPZ_ settings, boto3's region only"
    assert opz <= SETTINGS_VARS and opz <= documented_settings()
    settings = settings_from(cfg, monkeypatch)
    assert not settings.embedded and settings.host == "0.0.0.0" and settings.train_in_server is False
    redis_host = settings.redis_url.split("//")[1].split(":")[0]
    database = urlsplit(settings.database_url.get_secret_value())
    store = urlsplit(settings.s3_endpoint_url or "")
    kafka_host = settings.kafka_bootstrap_servers.split(":")[0]
    for host in (kafka_host, redis_host, database.hostname, store.hostname):
        assert docs[("Service", host)]["spec"]["type"] == "ExternalName"
    assert docs[("Service", database.hostname)]["spec"]["ports"][0]["port"] == database.port
    assert docs[("Service", store.hostname)]["spec"]["ports"][0]["port"] == store.port
    assert database.password is None, "a password belongs in the Secret opz-secrets"
    expected = {"opz-api": EXPECTED["api"], "opz-stream-worker": EXPECTED["stream-worker"],
                "opz-trainer": EXPECTED["trainer"]}
    assert set(workloads(docs)) == set(expected)
    for name, doc in workloads(docs).items():
        (container,) = containers(doc)
        assert "command" not in container, "the image's entry point (personalize) runs the args"
        assert container["args"] == expected[name]
        assert parse_personalize(container["args"]).fn.__module__ == "serving.cli"
        refs = container["envFrom"]
        assert refs[0]["configMapRef"]["name"] == "opz-settings"
        assert refs[1]["secretRef"] == {"name": "opz-secrets", "optional": True}
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True


def example_secret() -> dict[str, str]:
    (secret,) = load_docs(K8S / "base/secret.example.yaml")
    assert secret["metadata"]["name"] == "opz-secrets"
    return secret["stringData"]


def container_env(docs: dict[tuple[str, str], Doc], container: Doc) -> dict[str, str]:
    """What a container's environment holds: its envFrom (the rendered ConfigMaps, and the
    example Secret for opz-secrets, which the kustomization does not apply), then its env."""
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            env.update(docs[("ConfigMap", ref["configMapRef"]["name"])]["data"])
        elif ref["secretRef"]["name"] == "opz-secrets":
            env.update(example_secret())
    env.update({e["name"]: e.get("value", "<from a reference>") for e in container.get("env", [])})
    return env


@pytest.mark.parametrize("overlay", RENDERINGS)
def test_k8s_pods_share_no_volume_and_all_reach_the_bucket(overlay: str, rendered: Rendered,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """No PersistentVolumeClaim: each pod's /data (OPZ_DATA_DIR) is its own emptyDir, a cache;
    every workload gets the bucket, its endpoint, boto3's region and the S3 credentials."""
    docs = rendered[overlay]
    assert [key for key in docs if key[0] in ("PersistentVolumeClaim", "PersistentVolume")] == []
    assert not (K8S / "base/data-pvc.yaml").exists()
    assert set(workloads(docs)) == {"opz-api", "opz-stream-worker", "opz-trainer"}
    for name, doc in workloads(docs).items():
        pod = doc["spec"]["template"]["spec"]
        assert all(set(v) & {"persistentVolumeClaim", "nfs", "hostPath", "ephemeral"} == set()
                   for v in pod["volumes"]), f"{name}: a volume that outlives the pod or is shared"
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = containers(doc)
        env = container_env(docs, container)
        settings = settings_from({k: v for k, v in env.items() if k.startswith("OPZ_")}, monkeypatch)
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        data = mounts[str(settings.data_dir)]
        assert volumes[data] == {"name": data, "emptyDir": {}}, f"{name}: /data is not an emptyDir"
        assert settings.s3_bucket == "openpersonalize" and settings.s3_endpoint_url == "http://s3:7070", name
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(env), name
    assert set(example_secret()) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def quantity(value: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, value
    return float(match.group(1)) * units.get(match.group(2), 1)


@pytest.mark.parametrize("overlay", RENDERINGS)
def test_k8s_resources_probes_and_references(overlay: str,
                                             rendered: Rendered) -> None:
    docs = rendered[overlay]
    port = int(config(docs)["OPZ_PORT"])
    deployments = {name: d for (kind, name), d in docs.items() if kind == "Deployment"}
    assert set(deployments) == {"opz-api", "opz-stream-worker", "opz-trainer"}
    for name, doc in deployments.items():
        template_labels = doc["spec"]["template"]["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
        for container in containers(doc):
            res = container["resources"]
            for what in ("cpu", "memory"):
                assert quantity(res["requests"][what]) <= quantity(res["limits"][what]), f"{name} {what}"
            assert "livenessProbe" in container, f"{name} has no liveness probe"
    (api,) = containers(deployments["opz-api"])
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    # alive while the process serves; ready only while Kafka, Redis and PostgreSQL answer
    probes = {"startupProbe": "/health", "readinessProbe": "/ready", "livenessProbe": "/health"}
    for probe, path in probes.items():
        get = api[probe]["httpGet"]
        assert get["path"] == path and ports[get["port"]] == port, probe
    (worker,) = containers(deployments["opz-stream-worker"])
    assert worker["readinessProbe"]["exec"]["command"] == ["opz-healthcheck", "worker"]
    assert worker["livenessProbe"]["exec"]["command"] == ["opz-healthcheck", "worker", "--alive"]
    (trainer,) = containers(deployments["opz-trainer"])
    assert trainer["livenessProbe"]["exec"]["command"] == ["opz-healthcheck", "trainer"]
    for c in (worker, trainer):
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in c:
                assert c[probe]["exec"]["command"][0] == "opz-healthcheck"
                healthcheck_parser_accepts(c[probe]["exec"]["command"][1:])
    assert deployments["opz-trainer"]["spec"]["replicas"] == 1
    assert deployments["opz-trainer"]["spec"]["strategy"]["type"] == "Recreate"
    assert trainer["image"].rsplit(":", 1)[0].endswith("openpersonalize-trainer")
    assert api["image"] == worker["image"] and "trainer" not in api["image"]

    svc = docs[("Service", "opz-api")]
    api_labels = deployments["opz-api"]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= api_labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] in ports
    hpa = docs[("HorizontalPodAutoscaler", "opz-api")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", "opz-api")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for (kind, name), pdb in docs.items():
        if kind == "PodDisruptionBudget":
            assert len({"minAvailable", "maxUnavailable"} & set(pdb["spec"])) == 1, name
            target = deployments[name]["spec"]["template"]["metadata"]["labels"]
            assert pdb["spec"]["selector"]["matchLabels"].items() <= target.items()


def test_small_overlay_is_smaller(rendered: Rendered) -> None:
    base, small = rendered["base"], rendered["overlays/small"]
    for name in ("opz-api", "opz-stream-worker"):
        replicas = [d[("Deployment", name)]["spec"]["replicas"] for d in (small, base)]
        assert replicas[0] < replicas[1], name
    for name in ("opz-api", "opz-stream-worker", "opz-trainer"):
        b, s = (containers(d[("Deployment", name)])[0]["resources"] for d in (base, small))
        for kind in ("requests", "limits"):
            for what in ("cpu", "memory"):
                assert quantity(s[kind][what]) < quantity(b[kind][what]), (name, kind, what)
        assert containers(small[("Deployment", name)])[0]["image"].startswith("localhost:5000/")
    assert small[("HorizontalPodAutoscaler", "opz-api")]["spec"]["minReplicas"] == 1
    assert config(small)["OPZ_KAFKA_REPLICATION_FACTOR"] == "1"
    assert small[("PodDisruptionBudget", "opz-api")]["spec"] == {
        "maxUnavailable": 1, "selector": base[("PodDisruptionBudget", "opz-api")]["spec"]["selector"]}


def test_keda_scaledobject_scales_the_workers_on_their_consumer_lag(
        rendered: Rendered) -> None:
    (scaled,) = load_docs(K8S / "keda/scaledobject.yaml")
    base = rendered["base"]
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    worker = base[("Deployment", target["name"])]
    assert (target["kind"], target["apiVersion"]) == ("Deployment", "apps/v1")
    assert containers(worker)[0]["args"] == EXPECTED["stream-worker"]
    assert scaled["metadata"]["namespace"] == worker["metadata"]["namespace"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    cfg = config(base)
    assert meta["consumerGroup"] == cfg["OPZ_STREAM_APP_ID"] == Settings.model_fields["stream_app_id"].default
    assert meta["bootstrapServers"].split(":")[0] == base[("Service", "kafka")]["spec"]["externalName"]
    assert "topic" not in meta or re.fullmatch(r"opz\.[^.]+\.events", meta["topic"])
    assert events_topic("shop") == "opz.shop.events"
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values are strings"
    assert int(meta["lagThreshold"]) > 0
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= int(cfg["OPZ_KAFKA_PARTITIONS"]), \
        "more workers than one dataset group's partitions"
    assert "scaledobject" not in (K8S / "base/kustomization.yaml").read_text().lower(), \
        "the base must apply where the KEDA CRD is absent"


def test_prometheus_finds_every_metrics_endpoint(compose: dict[str, Any], rendered: Rendered) -> None:
    """The workers' /metrics on OPZ_METRICS_PORT (a port named `metrics`, pod annotations), the
    API's on OPZ_PORT (annotations on its Service); compose exposes the workers' port."""
    worker = compose["services"]["stream-worker"]
    assert worker["environment"]["OPZ_METRICS_PORT"] in worker["expose"]
    for docs in rendered.values():
        cfg = config(docs)
        deployment = docs[("Deployment", "opz-stream-worker")]
        (container,) = containers(deployment)
        assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == \
            int(cfg["OPZ_METRICS_PORT"]) > 0
        for notes, port in ((deployment["spec"]["template"]["metadata"]["annotations"], "OPZ_METRICS_PORT"),
                            (docs[("Service", "opz-api")]["metadata"]["annotations"], "OPZ_PORT")):
            prometheus = {k: v for k, v in notes.items() if k.startswith("prometheus.io/")}
            assert prometheus == {"prometheus.io/scrape": "true", "prometheus.io/port": cfg[port],
                                  "prometheus.io/path": "/metrics"}
            assert set(notes) - set(prometheus) <= {"checksum/settings"}, "the chart's: a new one rolls pods"


def pods(docs: dict[tuple[str, str], Doc]) -> dict[str, Doc]:
    """Each workload's pod template, by name."""
    return {name: t for (kind, name), d in docs.items() for t in pod_templates(d)}


@pytest.mark.parametrize("overlay", RENDERINGS)
def test_every_pod_runs_under_the_runtime_default_seccomp_profile(overlay: str, rendered: Rendered) -> None:
    templates = pods(rendered[overlay])
    assert set(templates) == {"opz-api", "opz-stream-worker", "opz-trainer"}
    for name, template in templates.items():
        assert template["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in template["spec"]["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "matchLabels only, so this check is exact"
    return selector.get("matchLabels", {}).items() <= labels.items()


@pytest.mark.parametrize("overlay", RENDERINGS)
def test_network_policies_let_only_the_ingress_reach_the_api(overlay: str, rendered: Rendered) -> None:
    docs = rendered[overlay]
    policies = {name: d for (kind, name), d in docs.items() if kind == "NetworkPolicy"}
    deny = policies["opz-default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}, "no pod takes what is not allowed"
    labels = {name: t["metadata"]["labels"] for name, t in pods(docs).items()}
    reachable: dict[str, list[tuple[Doc, int]]] = {name: [] for name in labels}
    for policy in policies.values():
        for name, pod_labels in labels.items():
            if selects(policy["spec"]["podSelector"], pod_labels):
                reachable[name] += [(peer, port["port"]) for rule in policy["spec"].get("ingress", [])
                                    for peer in rule["from"] for port in rule["ports"]]
    port = int(config(docs)["OPZ_PORT"])
    (api,) = containers(docs[("Deployment", "opz-api")])
    assert [p["containerPort"] for p in api["ports"]] == [port]
    assert reachable["opz-api"] == [
        ({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}, port)]
    metrics = int(config(docs)["OPZ_METRICS_PORT"])
    assert [p for _, p in reachable["opz-stream-worker"]] == [metrics], "the workers: /metrics only"
    assert reachable["opz-trainer"] == [], "the trainer: nothing"


@pytest.mark.parametrize("overlay", ["base", "overlays/small", "helm-small"])
def test_the_example_ingress_exposes_only_events_and_the_runtime(overlay: str, rendered: Rendered) -> None:
    docs = rendered[overlay]
    ingress = docs[("Ingress", "opz-api")]
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert {p["path"] for p in paths} == {"/events", "/recommendations", "/personalize-ranking"}
    assert all(p["pathType"] == "Exact" for p in paths), "a Prefix would let /events/.. or / through"
    service = docs[("Service", "opz-api")]
    for p in paths:
        backend = p["backend"]["service"]
        assert backend["name"] == "opz-api"
        assert backend["port"]["name"] in {sp["name"] for sp in service["spec"]["ports"]}
    assert ingress["spec"]["tls"], "served over TLS"
    cap = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert quantity(cap.replace("m", "Mi")) == Settings.model_fields["max_data_body_bytes"].default


@pytest.mark.parametrize("overlay", RENDERINGS)
def test_the_keys_secret_is_mounted_read_only_where_calls_are_checked(overlay: str, rendered: Rendered,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    docs = rendered[overlay]
    for name, template in pods(docs).items():
        spec = template["spec"]
        secrets = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
        mounts = {m["mountPath"]: m for c in spec["containers"] for m in c["volumeMounts"]}
        if name == "opz-stream-worker":
            assert "/etc/openpersonalize/keys" not in mounts
            continue
        mount = mounts["/etc/openpersonalize/keys"]
        assert mount["readOnly"] is True
        secret = secrets[mount["name"]]
        assert (secret["secretName"], secret["optional"]) == ("openpersonalize-keys", True), name
        assert secret["defaultMode"] & 0o007 == 0, "not readable by others"
    (example,) = load_docs(K8S / "base/keys-secret.example.yaml")
    assert example["metadata"]["name"] == "openpersonalize-keys"
    assert "keys-secret.example.yaml" not in (K8S / "base/kustomization.yaml").read_text().split(
        "resources:")[1].split("#")[0], "an example: not applied with placeholder keys"
    settings = settings_from(config(docs), monkeypatch)
    names = allowed_hosts(settings.allowed_hosts, settings.host)
    assert {"opz-api", "opz-api.openpersonalize.svc.cluster.local", "localhost"} <= names


@pytest.mark.parametrize("overlay", ["base", "helm"])
def test_the_datastores_and_the_object_store_admit_only_openpersonalizes_pods(overlay: str,
                                                                              rendered: Rendered) -> None:
    """k8s/datastores: policies in Kafka's, Redis', PostgreSQL's and the object store's
    namespaces, admitting our pods (and their own namespace's) on their ports."""
    docs = load_docs(K8S / "datastores/network-policies.yaml")
    base = rendered[overlay]
    ours = {name: t["metadata"]["labels"] for name, t in pods(base).items()}
    namespace = base[("Deployment", "opz-api")]["metadata"]["namespace"]
    if overlay == "base":
        assert base[("Namespace", namespace)]
    services = {"opz-kafka": "kafka", "opz-redis": "redis", "opz-postgres": "postgres", "opz-s3": "s3"}
    assert sorted(doc["metadata"]["name"] for doc in docs) == sorted(services)
    for doc in docs:
        k8s_validate(doc)
        service = services[doc["metadata"]["name"]]
        target = base[("Service", service)]["spec"]
        assert target["externalName"].split(".")[1] == doc["metadata"]["namespace"], "where it points"
        (listener,) = target["ports"]
        rules = doc["spec"]["ingress"]
        peers = rules[0]["from"]
        assert [p["port"] for p in rules[0]["ports"]] == [listener["port"]]
        assert peers[0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        assert all(selects(peers[0]["podSelector"], labels) for labels in ours.values())
        assert rules[1] == {"from": [{"podSelector": {}}]}, "their own namespace's pods"
        assert doc["spec"]["policyTypes"] == ["Ingress"]


# ---------------------------------------------------------------------------- the Helm chart

def test_helm_lint_passes() -> None:
    for args in ([], ["-f", str(CHART / "values-small.yaml")]):
        out = run_tool("helm.sh", "lint", "--strict", str(CHART), *args)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def selector(doc: Doc) -> dict[str, str]:
    """What a Deployment, PDB, Service or NetworkPolicy selects pods by."""
    spec = doc.get("spec", {})
    if doc["kind"] == "Service":
        return spec.get("selector", {})
    return (spec.get("selector") or spec.get("podSelector") or {}).get("matchLabels", {})


def comparable(doc: Doc) -> Doc:
    """An object less what the chart adds: labels and selectors (they name the release too:
    app.kubernetes.io/instance), the settings' checksum on pod templates, imagePullPolicy."""
    doc = json.loads(json.dumps(doc))
    meta = doc.pop("metadata")
    doc["annotations"] = meta.get("annotations", {})
    spec = doc.get("spec", {})
    for field in ("selector", "podSelector"):
        spec.pop(field, None)
    for template in pod_templates(doc):
        template["metadata"].pop("labels")
        notes = template["metadata"].pop("annotations", {})
        notes.pop("checksum/settings", None)
        if notes:
            template["metadata"]["annotations"] = notes
        for container in template["spec"]["containers"]:
            container.pop("imagePullPolicy", None)
    return doc


@pytest.mark.parametrize("kustomized, charted", [("base", "helm"), ("overlays/small", "helm-small")])
def test_the_chart_renders_what_the_kustomization_does(kustomized: str, charted: str,
                                                       rendered: Rendered) -> None:
    """The chart's defaults are k8s/base, values-small.yaml is k8s/overlays/small: the same objects
    with the same settings, pods, probes, resources, Services, HPA, PDBs and policies."""
    ours, theirs = rendered[charted], rendered[kustomized]
    with_ingress = "ingress.enabled=true" in HELM[charted]
    assert set(ours) == {key for key in theirs
                         if key[0] != "Namespace" and (key[0] != "Ingress" or with_ingress)}
    for key, doc in ours.items():
        assert doc["metadata"]["namespace"] == theirs[key]["metadata"]["namespace"]
        assert selector(theirs[key]).items() <= selector(doc).items(), key
        mine, base = comparable(doc), comparable(theirs[key])
        if key == ("Deployment", "opz-api"):
            # the HPA owns the count: an upgrade must not reset it
            assert "replicas" not in mine["spec"]
            assert base["spec"].pop("replicas") == theirs[("HorizontalPodAutoscaler", "opz-api")]["spec"][
                "minReplicas"]
        assert mine == base, key


def test_helm_values_name_real_settings_and_do_what_they_say(monkeypatch: pytest.MonkeyPatch) -> None:
    for values in ("values.yaml", "values-small.yaml"):
        names = {f"OPZ_{name.upper()}" for name in yaml.safe_load((CHART / values).read_text())["settings"]}
        assert names <= SETTINGS_VARS and names <= documented_settings(), values
    docs = by_key(helm_template(
        "--set", "fullnameOverride=shop,existingSecret=,networkPolicy.enabled=false",
        "--set", "api.autoscaling.enabled=false",
        "--set", "externalServices.s3=null,settings.s3_endpoint_url=null,settings.log_level=debug",
        "--set", "settings.allowed_hosts=shop.example.com"))
    for doc in docs.values():
        k8s_validate(doc)
    assert {name for kind, name in docs if kind == "Deployment"} == {"shop-api", "shop-stream-worker",
                                                                     "shop-trainer"}
    assert not {kind for kind, _ in docs} & {"NetworkPolicy", "HorizontalPodAutoscaler", "Ingress"}
    assert {name for kind, name in docs if kind == "Service"} == {"shop-api", "kafka", "redis", "postgres"}
    cfg = docs[("ConfigMap", "shop-settings")]["data"]
    settings = settings_from(cfg, monkeypatch)
    assert settings.s3_endpoint_url is None and settings.log_level == "debug"
    assert cfg["OPZ_ALLOWED_HOSTS"] == "shop.example.com"
    api = docs[("Deployment", "shop-api")]
    assert api["spec"]["replicas"] == 2
    assert containers(api)[0]["envFrom"] == [{"configMapRef": {"name": "shop-settings"}}]
    wrong = run_tool("helm.sh", "template", "opz", str(CHART), "--set", "settings.kafkaPartitions=4")
    assert wrong.returncode != 0 and "settings.kafkaPartitions: name a Settings field" in wrong.stderr


def test_the_tool_scripts_say_when_go_is_missing(tmp_path: Path) -> None:
    """Where the tools are not built yet and Go is absent: a one-line reason, exit 1."""
    for program in ("bash", "dirname"):
        os.symlink(subprocess.run(["bash", "-c", f"command -v {program}"], capture_output=True,
                                  text=True, check=True).stdout.strip(), tmp_path / program)
    for script, variable in (("kustomize.sh", "KUSTOMIZE_VERSION"), ("helm.sh", "HELM_VERSION")):
        out = subprocess.run([str(ROOT / "scripts" / script)], capture_output=True, text=True,
                             env={"PATH": str(tmp_path), variable: "v0.0.0-never-built"})
        assert (out.returncode, out.stderr) == (1, "missing go: install Go 1.26 or newer\n"), script


# ---------------------------------------------------------------------------- health checks

def healthcheck_parser_accepts(argv: list[str]) -> None:
    """argv after `opz-healthcheck` parses (argparse exits otherwise)."""
    assert healthcheck.build_parser().parse_args(argv).check in ("http", "worker", "trainer")


def test_the_worker_and_trainer_checks_ask_their_processes_health_on_the_metrics_port() -> None:
    assert healthcheck.health_url({"OPZ_METRICS_PORT": "9102", "OPZ_HOST": "0.0.0.0"}) == \
        "http://127.0.0.1:9102/health"
    assert healthcheck.health_url({"OPZ_METRICS_PORT": "9102"}) == "http://127.0.0.1:9102/health"
    assert healthcheck.health_url({"OPZ_METRICS_PORT": "9102", "OPZ_HOST": "10.0.0.7"}) == \
        "http://10.0.0.7:9102/health"
    assert healthcheck.health_url({"OPZ_METRICS_PORT": "9102", "OPZ_HOST": "::1"}) == "http://[::1]:9102/health"
    assert healthcheck.health_url({"OPZ_METRICS_PORT": "0"}) is None
    assert healthcheck.health_url({}) is None


def test_an_unhealthy_answer_reads_as_one_line() -> None:
    body = b'{"status": "unhealthy", "kafka": "answered 75.0 s ago"}'
    assert healthcheck.said(body) == "status unhealthy, kafka answered 75.0 s ago"
    assert healthcheck.said(b"<html>oops</html>") == "<html>oops</html>"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def test_http_check(listener: socket.socket) -> None:
    assert healthcheck.check_http("http://127.0.0.1:1/health") is not None
    port = listener.getsockname()[1]
    import threading

    def answer(status: str) -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode())
        conn.close()

    for status, healthy in (("200 OK", True), ("503 Service Unavailable", False)):
        t = threading.Thread(target=answer, args=(status,))
        t.start()
        problem = healthcheck.check_http(f"http://127.0.0.1:{port}/health")
        t.join()
        assert (problem is None) is healthy, problem
