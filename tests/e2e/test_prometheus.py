"""/metrics under real traffic, embedded and distributed: boto3 calls move the API's counters
by exactly what was sent, and the session consumer (in the API process, or a stream worker
on its own metrics port) counts each event applied once, with its freshness and, on a
worker, its partitions' lag."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Server, api_stack, consumer_lag, free_port

from kernel.contract import events_topic

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ITEMS = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"}, {"name": "GENRES", "type": "string", "categorical": True}]})


@pytest.fixture(params=["embedded", "distributed"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, unique: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, str]]:
    """The API, and the URL whose /metrics counts applied events: the API's own when
    embedded, its stream worker's OPZ_METRICS_PORT when distributed."""
    port = free_port()
    monkeypatch.setenv("OPZ_METRICS_PORT", str(port))  # the worker serves it; the API ignores it
    distributed = request.param == "distributed"
    for server in api_stack(request, tmp_path, unique, distributed):
        yield server, f"http://127.0.0.1:{port}" if distributed else server.url


def scrape(url: str) -> tuple[Samples, str]:
    text = httpx.get(url + "/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(url: str, want: float, name: str, **labels: str) -> Samples:
    """Samples once `name` reaches `want` (a worker's port opens a moment after it starts)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            samples, _ = scrape(url)
            if value(samples, name, **labels) >= want:
                return samples
        except httpx.TransportError:
            samples = {}
        assert time.monotonic() < deadline, f"{name}{labels} = {value(samples, name, **labels)}, not {want}"
        time.sleep(0.1)


def test_counters_move_by_exactly_what_was_sent(stack: tuple[Server, str], unique: str) -> None:
    server, sessions = stack
    control, events = server.client("personalize"), server.client("personalize-events")
    runtime = server.client("personalize-runtime")
    before, _ = scrape(server.url)

    group = control.create_dataset_group(name=unique)["datasetGroupArn"]
    tracker = control.create_event_tracker(name=f"{unique}-t", datasetGroupArn=group)["trackingId"]
    now = time.time()
    batches = [[{"eventId": f"e{c}-{i}", "eventType": "click", "itemId": f"i{i}", "sentAt": now + i}
                for i in range(c + 1)] for c in range(5)]  # 1 + 2 + 3 + 4 + 5 = 15 events
    for c, batch in enumerate(batches):
        events.put_events(trackingId=tracker, userId=f"u{c % 2}", sessionId="s", eventList=batch)
    # a client's retry: accepted again, then skipped by eventId downstream
    events.put_events(trackingId=tracker, userId="u0", sessionId="s", eventList=batches[0])
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.put_events(trackingId="no-such-tracker", userId="u0", sessionId="s", eventList=batches[0])
    schema = control.create_schema(name=f"{unique}-items", schema=ITEMS)["schemaArn"]
    items = control.create_dataset(name=f"{unique}-items", schemaArn=schema, datasetGroupArn=group,
                                   datasetType="ITEMS")["datasetArn"]
    events.put_items(datasetArn=items, items=[
        {"itemId": f"i{i}", "properties": json.dumps({"genres": "Drama"})} for i in range(3)])
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.get_recommendations(campaignArn=group.replace("dataset-group", "campaign"), userId="u0")
    made_up = httpx.post(server.url + "/", content=b"{}", headers={  # botocore would refuse it
        "X-Amz-Target": f"AmazonPersonalize.{unique}", "Content-Type": "application/x-amz-json-1.1"})
    assert made_up.status_code == 400

    after, text = scrape(server.url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "opz_api_requests_total"
    assert moved(requests, operation="PutEvents", status="200") == 6
    assert moved(requests, operation="PutEvents", status="404") == 1
    assert moved("opz_api_request_duration_seconds_count", operation="PutEvents") == 7
    assert moved("opz_api_events_accepted_total") == 16
    assert moved(requests, operation="PutItems", status="200") == 1
    assert moved("opz_api_records_accepted_total", dataset_type="ITEMS") == 3
    assert moved("opz_api_log_append_duration_seconds_count") == 7  # 6 PutEvents + 1 PutItems
    for op in ("CreateDatasetGroup", "CreateEventTracker", "CreateSchema", "CreateDataset"):
        assert moved(requests, operation=op, status="200") == 1, op
    assert moved(requests, operation="GetRecommendations", status="404") == 1
    assert moved(requests, operation="unknown", status="400") == 1
    assert moved(requests, operation="metrics", status="200") == 1  # the first scrape
    # bounded labels: no ARN, user, tracker or made-up operation name ever becomes one
    for needle in ("arn:", unique, tracker, "no-such-tracker"):
        assert needle not in text, needle
    assert ("opz_stream_" in text) == (sessions == server.url), "only an embedded API applies events"

    # each event once in the session state and the archive; the retry is a duplicate
    wait_for(sessions, 15, "opz_stream_events_applied_total")
    wait_for(sessions, 1, "opz_stream_duplicates_skipped_total", consumer="sessions")
    wait_for(sessions, 15, "opz_stream_events_archived_total")
    stream = wait_for(sessions, 1, "opz_stream_duplicates_skipped_total", consumer="archive")
    assert value(stream, "opz_stream_events_applied_total") == 15
    assert value(stream, "opz_stream_events_archived_total") == 15
    assert value(stream, "opz_stream_freshness_seconds_count") == 15
    assert value(stream, "opz_stream_freshness_seconds_bucket", le="+Inf") == 15
    assert 0 < value(stream, "opz_stream_freshness_seconds_sum") < 15 * 60
    assert value(stream, "opz_stream_apply_batch_duration_seconds_count") >= 1
    # distributed, a rebalance may also redeliver by offset (counted as duplicates too);
    # embedded, nothing is redelivered without a crash: exactly the retry
    if sessions == server.url:
        assert value(stream, "opz_stream_duplicates_skipped_total", consumer="sessions") == 1
        assert value(stream, "opz_stream_duplicates_skipped_total", consumer="archive") == 1
    assert value(stream, "process_cpu_seconds_total") > 0
    if sessions != server.url:  # the one worker owns every partition, and has applied them all
        topic = events_topic(unique)
        deadline = time.monotonic() + 30
        while (lag := consumer_lag(sessions, topic)) != {p: 0 for p in range(4)}:
            assert time.monotonic() < deadline, lag
            time.sleep(0.2)
