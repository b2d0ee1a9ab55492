"""Prometheus metrics of the work an API or trainer process does besides answering requests:
jobs (imports, exports, deletions, trainings), model loads, and where GetRecommendations found
each user's HRNN state.

Labels come from fixed sets (job kinds, outcomes, state sources), never an ARN or a user. The
job runner and the model cache take a `WorkMetrics` (or none: the tests' runners count nothing).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

JOB_KINDS = ("dataset-import-job", "dataset-export-job", "data-deletion-job", "solution-version",
             "recommender-version")
OUTCOMES = ("succeeded", "failed", "crashed", "stopped", "interrupted", "taken_over")
STATE_SOURCES = ("live", "cache", "artifact", "rerun")
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class WorkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.finished = Counter("opz_jobs_finished", "Jobs this process ended, by kind and outcome "
                                "(interrupted: handed back at shutdown; taken_over: its lease lapsed "
                                "and another runner took it)", ["kind", "outcome"], registry=registry)
        self.seconds = Histogram("opz_job_duration_seconds", "From a job's claim to its end in this "
                                 "process, by kind", ["kind"], buckets=JOB_BUCKETS, registry=registry)
        self.running = Gauge("opz_jobs_running", "Jobs this process runs now, by kind", ["kind"],
                             registry=registry, multiprocess_mode="livesum")
        self.loads = Counter("opz_model_loads", "Solution versions loaded for serving (fetched from the "
                             "artifact store when not cached), by outcome", ["outcome"], registry=registry)
        self.load_seconds = Histogram("opz_model_load_duration_seconds", "One model load, fetch "
                                      "included", buckets=LOAD_BUCKETS, registry=registry)
        self.states = Counter("opz_state_cache_lookups", "Where a request found its user's HRNN state: "
                              "live (the stream workers'), cache (this process's, stepped over new "
                              "events), artifact (as of training), rerun (no state to resume)",
                              ["source"], registry=registry)
        for kind in JOB_KINDS:
            self.running.labels(kind)
            self.seconds.labels(kind)
            for outcome in OUTCOMES:
                self.finished.labels(kind, outcome)
        for outcome in ("succeeded", "failed"):
            self.loads.labels(outcome)
        self._sources = {source: self.states.labels(source) for source in STATE_SOURCES}

    def job_started(self, kind: str) -> None:
        self.running.labels(kind).inc()

    def job_ended(self, kind: str, outcome: str, seconds: float) -> None:
        self.running.labels(kind).dec()
        self.finished.labels(kind, outcome).inc()
        self.seconds.labels(kind).observe(seconds)

    def model_loaded(self, seconds: float, ok: bool) -> None:
        self.loads.labels("succeeded" if ok else "failed").inc()
        if ok:
            self.load_seconds.observe(seconds)

    def state_from(self, source: str) -> None:
        self._sources[source].inc()
