"""Stream metrics: what one apply batch and one archive batch count, freshness."""
from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kernel.contract import Event
from stream.metrics import StreamMetrics, freshness, new_registry, partition_lag


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def event(i: int, received_at: float) -> Event:
    return Event(event_id=f"e{i}", dataset_group="g", tracking_id="t", user_id="u", session_id="s",
                 event_type="click", item_id=f"i{i}", sent_at=float(i), received_at=received_at)


def test_a_batch_counts_applied_duplicates_and_freshness() -> None:
    metrics = StreamMetrics(CollectorRegistry())
    with metrics.session_batch(5) as on_applied:
        on_applied([event(1, 0.0), event(2, 0.0)])
        on_applied([event(3, 0.0)])
    r = metrics.registry
    assert value(r, "opz_stream_events_applied_total") == 3
    assert value(r, "opz_stream_duplicates_skipped_total", consumer="sessions") == 2
    assert value(r, "opz_stream_freshness_seconds_count") == 3
    assert value(r, "opz_stream_freshness_seconds_bucket", le="300.0") == 0  # received in 1970
    assert value(r, "opz_stream_apply_batch_duration_seconds_count") == 1
    metrics.archive_batch(5, 4)
    assert value(r, "opz_stream_events_archived_total") == 4
    assert value(r, "opz_stream_duplicates_skipped_total", consumer="archive") == 1
    metrics.archive_batch(5, 3, set_aside=1)  # one event the archive cannot hold: not a duplicate
    metrics.dead("archive", 1)
    assert value(r, "opz_stream_dead_letters_total", consumer="archive") == 1
    assert value(r, "opz_stream_duplicates_skipped_total", consumer="archive") == 2


def test_a_failed_batch_counts_nothing() -> None:
    metrics = StreamMetrics(CollectorRegistry())
    with pytest.raises(OSError), metrics.session_batch(5):
        raise OSError("store down")
    assert value(metrics.registry, "opz_stream_apply_batch_duration_seconds_count") == 0
    assert value(metrics.registry, "opz_stream_duplicates_skipped_total", consumer="sessions") == 0


def test_freshness_treats_clock_skew_as_zero() -> None:
    assert freshness(received_at=100.0, now=100.25) == 0.25
    assert freshness(received_at=100.0, now=99.0) == 0.0


def test_lag_is_the_log_end_minus_the_next_offset_to_apply() -> None:
    ends = {("t", 0): 100, ("t", 1): 100, ("t", 2): 0, ("t", 3): 7}
    applied = {("t", 0): 99, ("t", 1): 49, ("t", 2): None, ("t", 3): None}
    assert partition_lag(ends, applied) == {("t", 0): 0, ("t", 1): 50, ("t", 2): 0, ("t", 3): 7}


def test_lag_series_are_the_partitions_owned_now() -> None:
    metrics = StreamMetrics(CollectorRegistry())
    r = metrics.registry
    metrics.lag.set({("opz.g.events", 0): 5, ("opz.g.events", 1): 0})
    assert value(r, "opz_stream_consumer_lag", topic="opz.g.events", partition="0") == 5
    assert r.get_sample_value("opz_stream_consumer_lag", {"topic": "opz.g.events", "partition": "1"}) == 0
    metrics.lag.set({("opz.g.events", 1): 3})  # partition 0 moved to another worker
    assert r.get_sample_value("opz_stream_consumer_lag", {"topic": "opz.g.events", "partition": "0"}) is None
    assert value(r, "opz_stream_consumer_lag", topic="opz.g.events", partition="1") == 3


def test_every_registry_says_which_release_runs_and_carries_no_created_series() -> None:
    registry = new_registry()
    StreamMetrics(registry).archive_batch(3, 3)
    text = generate_latest(registry).decode()
    assert re.search(r'^opz_build_info\{python="3\.\d+\.\d+",version="[^"]+"\} 1\.0$', text, re.M), text
    assert "_created" not in text
