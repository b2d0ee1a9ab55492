"""Poison bodies through the real pipeline, in both modes: a few hundred PutEvents, PutItems and
PutUsers that hypothesis writes (tests/poison.py: every field at and past its bounds, any Unicode,
nulls, huge strings, wrong types, JSON that is no request), sent over raw HTTP as a page, curl or
a broken producer would send them (boto3 refuses most of them before sending), and on every run
the bodies that once got a 500 (`known_poison`).

What a user may count on afterwards: no body got a 5xx; each broken one got a 4xx in Personalize's
error shape and left nothing behind; each well-formed one got 200, and every one of its events was
applied to session state, archived for training and is in a PUT export, once and as sent, and its
items and users are in their datasets' PUT exports. No consumer set anything aside, and a solution
version of the dataset group still trains.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from hypothesis import example, given, settings
from hypothesis import strategies as st
from poison import FUZZ, ITEMS_SCHEMA, USERS_SCHEMA, Body, Ids, known_poison, put_events, put_items, put_users
from prometheus_client.parser import text_string_to_metric_families
from test_datasets import INTERACTIONS, Dataset, read_csv
from test_poison_events import Stack, clicks, tracker
from test_training import RECIPE, wait

REQUESTS = 200  # bodies per mode: about 120 PutEvents, 40 PutItems, 40 PutUsers
SETTLE_S = 90.0  # for the consumers to catch up, on a busy 2-core CI machine


class Sent:
    """What the server answered, and what it accepted: the events as they must be recorded."""

    def __init__(self) -> None:
        self.by_status: Counter[int] = Counter()
        self.events: dict[str, dict[str, Any]] = {}  # eventId -> the event as it must be recorded
        self.items: set[str] = set()
        self.users: set[str] = set()

    def answered(self, body: Body, resp: httpx.Response) -> None:
        self.by_status[resp.status_code] += 1
        what = (f"{body.path} breaking [{body.why}] {body.content[:300]!r} -> "
                f"{resp.status_code} {resp.text[:300]}")
        assert resp.status_code < 500, what
        if resp.status_code >= 400:
            error = resp.json()
            assert isinstance(error.get("__type"), str) and isinstance(error.get("message"), str), what
            assert error["message"], what
        assert (resp.status_code == 200) == body.well_formed, what
        if not body.well_formed:
            return
        self.events |= {e["eventId"]: e for e in body.events}
        if body.path == "/items":
            self.items.update(body.ids)
        elif body.path == "/users":
            self.users.update(body.ids)


def metric(stack: Stack, name: str, **labels: str) -> float:
    """A stream metric (the worker's, in Kafka mode); 0 before its first sample."""
    url = stack.worker.metrics_url if stack.worker else stack.server.url
    text = httpx.get(url + "/metrics", timeout=5).text
    return next((s.value for f in text_string_to_metric_families(text) for s in f.samples
                 if s.name == name and s.labels == labels), 0.0)


def until(check: Callable[[], Any], what: str, stack: Stack, timeout: float = SETTLE_S) -> Any:
    """check()'s first truthy answer, polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while not (answer := check()):
        assert time.monotonic() < deadline, f"{what}\n{stack.output()[-5_000:]}"
        time.sleep(0.5)
    return answer


def exported_ids(dataset: Dataset, to: Path, column: str) -> Callable[[], set[str]]:
    """A PUT export of `dataset` each call (a new job): the ids in `column`."""
    jobs = iter(range(1_000))
    return lambda: {r[column] for r in read_csv(dataset.export(to, f"{column}-{next(jobs)}", mode="PUT")
                                                / "part-00000.csv")}


def rows_match(rows: list[dict[str, str]], events: list[dict[str, Any]]) -> None:
    """The INTERACTIONS rows of a PUT export are the events, once each: ITEM_ID, EVENT_TYPE and
    TIMESTAMP as sent; USER_ID the userId, or for an anonymous event the sessionId (or a user who
    signed in with that session, as Personalize stitches them)."""
    signed_in: dict[str, set[str]] = {}
    for e in events:
        if e["userId"] is not None:
            signed_in.setdefault(e["sessionId"], set()).add(e["userId"])
    open_: dict[tuple[str, str, str], list[set[str]]] = {}
    for e in events:
        users = {e["userId"]} if e["userId"] is not None else signed_in.get(e["sessionId"], {e["sessionId"]})
        open_.setdefault((e["itemId"] or "", e["eventType"], str(e["timestamp"])), []).append(users)
    assert Counter((r["ITEM_ID"], r["EVENT_TYPE"], r["TIMESTAMP"]) for r in rows) == Counter(
        {k: len(v) for k, v in open_.items()})
    for r in rows:
        candidates = open_[(r["ITEM_ID"], r["EVENT_TYPE"], r["TIMESTAMP"])]
        match = next((c for c in candidates if r["USER_ID"] in c), None)
        assert match is not None, (r, candidates)
        candidates.remove(match)


def test_poison_bodies_leave_every_well_formed_event_in_training_and_exports(
        tmp_path: Path, unique: str, mode_env: dict[str, str]) -> None:
    stack = Stack(tmp_path, unique, mode_env, OPZ_MIN_TRAINING_INTERACTIONS="10").start()
    try:
        control = stack.server.client("personalize")
        tracking_id = tracker(stack.server, unique)
        interactions = Dataset(control, unique, "INTERACTIONS", INTERACTIONS)
        items = Dataset(control, unique, "ITEMS", ITEMS_SCHEMA)
        users = Dataset(control, unique, "USERS", USERS_SCHEMA)
        sent = Sent()

        # plain clicks through boto3, so that training has enough (25 users with 2 or more
        # interactions) whatever hypothesis sends
        boto3_events = stack.server.client("personalize-events")
        for u in range(30):
            clicks(boto3_events, tracking_id, f"u{u}", [f"i{(u + n) % 5}" for n in (0, 1)])
            sent.events |= {f"u{u}-{n}": {"eventId": f"u{u}-{n}", "userId": f"u{u}", "sessionId": f"s-u{u}",
                                          "itemId": f"i{(u + n) % 5}", "eventType": "click",
                                          "timestamp": None} for n in (0, 1)}  # sentAt: now, read back

        ids = Ids()
        kinds = {"/events": put_events(tracking_id, ids), "/items": put_items(items.arn, users.arn),
                 "/users": put_users(users.arn, items.arn)}
        bodies = st.sampled_from(["/events", "/events", "/events", "/items", "/users"]).flatmap(kinds.get)
        with httpx.Client(base_url=stack.server.url, timeout=60) as http:

            @settings(FUZZ, max_examples=REQUESTS)
            @given(bodies)
            def send(body: Body) -> None:
                sent.answered(body, http.post(body.path, content=body.content,
                                              headers={"content-type": "application/json"}))

            for known in known_poison(tracking_id, items.arn, users.arn):
                send = example(known)(send)
            send()
        assert sum(sent.by_status.values()) >= REQUESTS, sent.by_status
        assert sent.by_status[200] > REQUESTS // 4, sent.by_status  # well-formed ones do get through
        accepted = sent.events

        # applied, archived and exported: every accepted event, once, as sent
        until(lambda: metric(stack, "opz_stream_events_applied_total") >= len(accepted),
              f"{len(accepted)} events accepted, not all applied", stack)
        archived = {e.event_id: e for e in stack.archived(len(accepted), timeout=SETTLE_S)}
        assert archived.keys() == accepted.keys()
        for event_id, want in accepted.items():
            got = archived[event_id]
            want["timestamp"] = int(got.sent_at) if want["timestamp"] is None else want["timestamp"]
            assert (got.user_id, got.session_id, got.item_id, got.event_type, int(got.sent_at)) == (
                want["userId"], want["sessionId"], want["itemId"], want["eventType"], want["timestamp"]
            ), event_id
        assert metric(stack, "opz_stream_events_applied_total") == len(accepted)
        rows = read_csv(interactions.export(tmp_path / "out", "events", mode="PUT") / "part-00000.csv")
        rows_match(rows, list(accepted.values()))

        items_exported = exported_ids(items, tmp_path / "out", "ITEM_ID")
        until(lambda: items_exported() == sent.items,
              f"{len(sent.items)} items accepted, not all in the ITEMS dataset", stack)
        users_exported = exported_ids(users, tmp_path / "out", "USER_ID")
        until(lambda: users_exported() == sent.users,
              f"{len(sent.users)} users accepted, not all in the USERS dataset", stack)
        for consumer in ("sessions", "archive", "datasets"):
            assert metric(stack, "opz_stream_dead_letters_total", consumer=consumer) == 0, consumer

        # and the dataset group still trains
        group = f"arn:aws:personalize:us-east-1:000000000000:dataset-group/{unique}"
        solution = control.create_solution(name=unique, datasetGroupArn=group,
                                           recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
        arn = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
        version = wait(lambda: control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"])
        assert version["status"] == "ACTIVE" and "failureReason" not in version, version.get("failureReason")
    finally:
        stack.stop()
