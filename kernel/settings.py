"""All configuration, read from the environment (prefix OPZ_) once, at the entry point."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, computed_field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kernel.locations import BUCKET, Locations, roots_of, s3_roots_of


class Settings(BaseSettings):
    """Built by `personalize ...` (or a test) and passed down; no module reads os.environ."""

    model_config = SettingsConfigDict(env_prefix="OPZ_", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="event log, control plane, artifacts")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # API processes `personalize serve` runs on that port (one core each); distributed mode
    # only, since embedded mode keeps sessions' recommendation ids and the event applier in one
    workers: int = Field(1, ge=1)
    # `personalize stream worker` and `personalize trainer` serve Prometheus' /metrics on this
    # port (0: not at all); the API serves its /metrics on `port`
    metrics_port: int = Field(0, ge=0, le=65535)
    kafka_bootstrap_servers: str | None = Field(None, description="host:port[,host:port]")
    # partitions of each events topic: the most stream workers that can share one dataset group
    kafka_partitions: int = Field(4, ge=1)
    kafka_replication_factor: int = Field(1, ge=1, description="3 on a 3-broker cluster")
    # replicas that must have an event before PutEvents answers 200 (acks=all), set on each
    # new topic; unset: the brokers' default. 2 with replication 3: one broker may be down
    kafka_min_insync_replicas: int | None = Field(None, ge=1)
    stream_app_id: str = Field("opz-stream", description="Faust app id = Kafka consumer group")
    stream_dataset_groups: str = Field(".+", description="regex: dataset groups these workers follow")
    redis_url: str | None = Field(None, description="redis://host:port/db")
    redis_prefix: str = Field("opz", description="key prefix, so tests and tenants never collide")
    # postgresql://user:password@host:5432/db: the control plane (resources, the job queue,
    # access keys) lives there instead of <data dir>/control.db, so API processes and trainers
    # on any hosts share it without a shared disk. A secret: it may hold the password
    database_url: SecretStr | None = None
    # the region in the ARNs of what unsigned calls create: a signed call's comes from its
    # signing scope (the client's configured region), as an AWS endpoint's region does
    region: str = "us-east-1"
    account: str = "000000000000"
    # one user's session ends after this much inactivity (Personalize uses 30 minutes too)
    session_gap_seconds: float = Field(1800.0, gt=0)
    # newest interactions kept per user (HRNN's max_user_history_length default)
    max_user_history_length: int = Field(200, ge=1)
    # GetRecommendations on catalogs of at least this many items asks an ANN index (IVF-Flat, L2
    # over [E | b] made maximum-inner-product, serving/ann.py) instead of scoring every item,
    # whose cost grows with the catalog (figures: docs/benchmarks.md, serving)
    ann_min_items: int = Field(50_000, ge=1)
    # inverted lists of the index (0: 4 x sqrt(items)), and how many a request scans (faiss's
    # nprobe): 24 kept recall@25 >= 0.97 against exact scoring at 100k and 1M items (first
    # measured with the inner-product index; the L2 one reached 1.000 at 1M from 8 probes)
    ann_lists: int = Field(0, ge=0)
    ann_probes: int = Field(24, ge=1)
    # users whose HRNN state serving keeps per process, so a request steps only new events
    state_cache_users: int = Field(100_000, ge=0)
    # the API process runs training jobs too; set false where `personalize trainer` processes do
    train_in_server: bool = True
    # an API process trains in a child process of lower priority (`training_nice` added to its
    # niceness) on `training_cores` of the cores it may use (0: all but one), so requests keep
    # a core; false: in a thread of the API process itself
    training_process: bool = True
    training_nice: int = Field(10, ge=0, le=19)
    training_cores: int = Field(0, ge=0)
    # solution versions one process trains at once (0: one per core it may use); imports and
    # exports have slots of their own and never wait behind a training
    training_slots: int = Field(0, ge=0)
    # automatic training (performAutoTraining): an UPDATE this often between scheduled FULLs
    auto_update_seconds: float = Field(7200.0, gt=0)
    # Personalize refuses to train on fewer interactions (tests lower it for small slices)
    min_training_interactions: int = Field(1000, ge=1)
    # web pages allowed to call /events, /recommendations, /personalize-ranking (the JS SDK):
    # "*", or a comma-separated list of origins; empty: no CORS (same-origin pages only)
    cors_origins: str = ""
    # Host names the control plane answers to (comma-separated, any port; "*": any), besides
    # the loopback names and OPZ_HOST: a web page that rebinds its own name to this server
    # (DNS rebinding) sends its name, and is refused. The data plane is not checked.
    allowed_hosts: str = ""
    # request bodies above these are refused (413) before they are read: the control plane
    # (POST /) and the events and runtime routes
    max_control_body_bytes: int = Field(10 * 2**20, ge=1)
    max_data_body_bytes: int = Field(2**20, ge=1)
    # a request's head, then its body, must arrive within this long each (else 408 and the
    # connection is closed); the head may be this large (request line and headers)
    read_timeout_s: float = Field(30.0, gt=0)
    max_header_bytes: int = Field(64 * 2**10, ge=1024)
    # connections (or requests in progress) per API process beyond which uvicorn answers 503
    max_connections: int = Field(1000, ge=1)
    # requests a second per campaign (GetRecommendations, GetPersonalizedRanking: each its own)
    # and per event tracker (PutEvents): Personalize's default quotas; 0 = no limit. Per API
    # process: with --workers N the server allows N times as many.
    campaign_requests_per_second: float = Field(500.0, ge=0)
    tracker_requests_per_second: float = Field(1000.0, ge=0)
    # how long a recommendationId's items are kept for implicit impressions (Redis: ~300 B each)
    recommendation_ttl_s: float = Field(1800.0, gt=0)
    # signed calls (SigV4) are required once an access key exists (`personalize keys create`,
    # or this JSON file: a list of {"accessKeyId", "secretAccessKey", "account"}); "off" never
    # checks, which `personalize serve` allows without keys only on a loopback address
    auth: Literal["auto", "off"] = "auto"
    keys_file: Path | None = None
    # what a Prometheus scrape of the API's /metrics sends as `Authorization: Bearer ...` once
    # calls are signed (the metrics span every account, so no account's key reads them);
    # unset: /metrics is refused there
    metrics_token: SecretStr | None = None
    # resource quotas per account over Personalize's defaults (serving/quotas.py), as JSON:
    # {"*": {"campaign": 20}, "<account>": {"filter": 50}}
    quotas: dict[str, dict[str, int]] = Field(default_factory=dict)
    # folders import jobs may read and export jobs may write (colon-separated); empty: only
    # <data dir>/files. A dataLocation or export path anywhere else is refused.
    file_roots: str = ""
    # S3 buckets or prefixes import jobs may read and export jobs may write (comma-separated
    # s3://bucket[/prefix]); empty: no s3:// location at all. The server reads and writes
    # them with its own credentials (AWS_ACCESS_KEY_ID..., the standard chain), at this
    # endpoint when set (an S3-compatible store), else AWS's
    s3_roots: str = ""
    s3_endpoint_url: str | None = None
    # the bucket that holds model artifacts (artifacts/<solution>/<version>/, at that endpoint,
    # with the same credentials), so trainers, API processes and stream workers on any hosts
    # share them without a shared disk; each reader keeps a verified copy under
    # <data dir>/cache. Unset: artifacts are folders of the data dir (embedded default)
    s3_bucket: str | None = None
    # with OPZ_S3_BUCKET: the disk the verified artifact cache under <data dir>/cache may take
    # (GiB); beyond it the least recently used artifacts are deleted, never the one being loaded
    artifact_cache_gb: float = Field(20.0, gt=0)
    # distributed mode: the stream workers store each partition's events in the archive (the
    # bucket's with OPZ_S3_BUCKET, else the data dir's) once per this window (seconds): shorter
    # makes PutEvents reach training sooner, longer makes fewer, larger parts
    archive_window_s: float = Field(5.0, gt=0, le=3600)
    log_level: str = "info"
    # text (for a terminal) or json: one object per line, the access log's fields as keys
    log_format: Literal["text", "json"] = "text"
    # one line per answered request (logger opz.access): client, method, path, operation,
    # status, duration; never a query string or a body
    access_log: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def embedded(self) -> bool:
        """One process, SQLite log and session store: neither Kafka nor Redis configured."""
        return self.kafka_bootstrap_servers is None and self.redis_url is None

    @model_validator(mode="after")
    def _both_or_neither(self) -> Settings:
        if (self.kafka_bootstrap_servers is None) != (self.redis_url is None):
            raise ValueError("distributed mode needs both OPZ_KAFKA_BOOTSTRAP_SERVERS and "
                             "OPZ_REDIS_URL; set neither for embedded mode")
        return self

    @model_validator(mode="after")
    def _one_process_embedded(self) -> Settings:
        if self.workers > 1 and self.embedded:
            raise ValueError(f"{self.workers} API processes (--workers, OPZ_WORKERS) need distributed "
                             "mode (OPZ_KAFKA_BOOTSTRAP_SERVERS and OPZ_REDIS_URL): embedded mode "
                             "applies events and keeps recommendation ids in its one process")
        return self

    @model_validator(mode="after")
    def _min_isr_within_replicas(self) -> Settings:
        if (self.kafka_min_insync_replicas or 1) > self.kafka_replication_factor:
            raise ValueError("OPZ_KAFKA_MIN_INSYNC_REPLICAS cannot exceed OPZ_KAFKA_REPLICATION_FACTOR: "
                             "every append would be refused")
        return self

    @property
    def roots(self) -> tuple[Path, ...]:
        return roots_of(self.file_roots, self.data_dir)

    @property
    def trainings_at_once(self) -> int:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return self.training_slots or max(1, cores)

    @property
    def locations(self) -> Locations:
        return Locations(self.roots, s3_roots_of(self.s3_roots))

    @model_validator(mode="after")
    def _s3_roots_parse(self) -> Settings:
        s3_roots_of(self.s3_roots)  # a typo fails at start, not on the first job
        if self.s3_bucket is not None and not BUCKET.match(self.s3_bucket):
            raise ValueError(f"OPZ_S3_BUCKET: {self.s3_bucket[:70]!r} is not an S3 bucket name")
        return self

    def arn(self, kind: str, name: str, account: str | None = None, region: str | None = None) -> str:
        """`region` and `account`: the caller's (serving/accounts.py); the server's own by default."""
        return f"arn:aws:personalize:{region or self.region}:{account or self.account}:{kind}/{name}"
