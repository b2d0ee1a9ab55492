"""`make_faust_app(settings)`: the one Faust app of the stream workers (group id = app id)."""
from __future__ import annotations

import faust

from kernel.settings import Settings


def make_faust_app(settings: Settings) -> faust.App:
    assert settings.kafka_bootstrap_servers, "stream workers need OPZ_KAFKA_BOOTSTRAP_SERVERS"
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.kafka_bootstrap_servers.split(","))
    return faust.App(
        settings.stream_app_id, broker=brokers,
        store="memory://",  # no Faust tables: session state lives in the SessionStore (Redis)
        web_enabled=False, topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        table_standby_replicas=0,
        producer_acks=-1, broker_commit_interval=1.0, consumer_auto_offset_reset="earliest",
        datadir=str(settings.data_dir / "faust"),
        # a group joined while a broker restarts gets no partitions (no metadata); a metadata
        # refresh is what notices and rejoins, so do it in seconds, not aiokafka's 5 minutes
        consumer_metadata_max_age_ms=5000,
        # a killed (or crashed and re-executed) worker leaves the group without saying so:
        # its partitions move after the session timeout, 10 s here instead of Faust's 60 s
        broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
        # a rebalance must not wait for the agents to ack what they hold: with take_events'
        # buffers that wait never ends (faust-streaming#133; seen here with 2 workers, the
        # survivor of a kill -9 stuck in "wait_empty" for good). What a revoked partition's
        # old owner still applies is fenced by the position the store saves with the states
        # (stream/applier.py: apply_partition), so exactly once does not rest on this wait
        stream_wait_empty=False,
    )
