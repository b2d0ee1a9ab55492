"""A model-driven fuzz run against a real embedded server, over raw HTTP (boto3 would refuse
most of these requests before sending them).

Every implemented operation of the three services (serving/coverage.py) gets requests made
from botocore's shapes (tests/model_requests.py): valid ones, and ones that break each rule
once (too long, too short, wrong JSON type, bad pattern, out of range, missing required, too
many entries, unknown enum), plus raw bodies that are no JSON request at all and filters
nested too deep. Seeded: the same requests every run. The server must answer every one below
500 in Personalize's error shape, refuse each broken one naming the member, stay healthy and
keep its memory. Valid requests reach real resources only where that is cheap (one small
popularity campaign trained here, its dataset group, tracker and filter): every other ARN
names nothing, so no generated request can start an import or a training.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import httpx
import orjson
from model_requests import DEFAULT, Break, Maker, Requests
from support import Server
from test_training import RECIPE, dataset_group, slice_of_ml100k, train

from serving import coverage
from serving.filters import MAX_DEPTH

SEED = 15
TOTAL = 2_400       # requests per run, at least
VALID_EACH = 10     # valid requests per operation
RSS_GROWTH_MB = 100
JSON_CONTENT = {"personalize": "application/x-amz-json-1.1"}


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def sometimes(value: Any, p: float = 0.6) -> Maker:
    return lambda r: value if r.random() < p else DEFAULT


def real_resources(server: Server, tmp_path: Path) -> dict[str, str]:
    """A small popularity campaign, its dataset group, dataset, tracker and a filter."""
    control = server.client("personalize")
    group = dataset_group(control, "fuzz", slice_of_ml100k(tmp_path / "ml.csv", 5_000))
    solution = control.create_solution(name="fuzz-pop", datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")
    campaign = control.create_campaign(name="fuzz-pop", solutionVersionArn=version["solutionVersionArn"],
                                       minProvisionedTPS=1)["campaignArn"]
    filter_arn = control.create_filter(name="fuzz-seen", datasetGroupArn=group, filterExpression=(
        'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($TYPES)'))["filterArn"]
    tracking = control.create_event_tracker(name="fuzz-web", datasetGroupArn=group)["trackingId"]
    dataset = control.list_datasets(datasetGroupArn=group)["datasets"][0]["datasetArn"]
    return {"group": group, "campaign": campaign, "filter": filter_arn, "tracking": tracking,
            "dataset": dataset}


def known(real: dict[str, str]) -> dict[str, dict[str, Maker]]:
    """Per operation, the members a valid request fills with something real or meaningful."""
    group = {"datasetGroupArn": sometimes(real["group"])}
    expressions = ['EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")',
                   'INCLUDE ItemID WHERE Items.GENRES IN ($GENRES) IF CurrentUser.AGE > 20']
    runtime = {"campaignArn": sometimes(real["campaign"], 0.8), "filterArn": sometimes(real["filter"]),
               "filterValues": sometimes({"TYPES": '"click", "watch"'}, 0.3)}
    return {
        **{op: group for op in ("DescribeDatasetGroup", "ListDatasets", "ListEventTrackers", "ListFilters")},
        "CreateFilter": {**group, "filterExpression": lambda r: r.choice([*expressions, DEFAULT])},
        "PutEvents": {"trackingId": sometimes(real["tracking"], 0.7)},
        "PutItems": {"datasetArn": sometimes(real["dataset"])},
        "PutUsers": {"datasetArn": sometimes(real["dataset"])},
        "GetRecommendations": runtime,
        "GetPersonalizedRanking": runtime,
    }


class Client:
    """Raw HTTP to the server: each answer checked for the error shape, tallied by status."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.sent, self.by_status = 0, dict[int, int]()

    def send(self, service: str, route: str, operation: str, body: bytes,
             content_type: str | None = None) -> httpx.Response:
        headers = {"content-type": content_type or JSON_CONTENT.get(service, "application/json")}
        if service == "personalize":
            headers["x-amz-target"] = f"AmazonPersonalize.{operation}"
        resp = self.http.post(route, content=body, headers=headers)
        self.sent += 1
        self.by_status[resp.status_code] = self.by_status.get(resp.status_code, 0) + 1
        what = f"{operation} {body[:300]!r} -> {resp.status_code} {resp.text[:300]}"
        assert resp.status_code < 500, what
        if resp.status_code >= 400:
            error = resp.json()
            assert isinstance(error, dict) and isinstance(error.get("__type"), str), what
            assert isinstance(error.get("message"), str) and error["message"], what
            assert len(error["message"]) < 2_000 and "x" * 300 not in error["message"], what  # no echo
        return resp


def route(requests: Requests, operation: str) -> str:
    return requests.model["operations"][operation]["http"]["requestUri"]


def expect_refused(resp: httpx.Response, type_name: str, member: str) -> None:
    error = resp.json()
    assert (resp.status_code, error["__type"]) == (400, type_name), (member, resp.text[:300])
    assert error["message"].startswith(f"{member}: "), (member, error["message"][:300])


def send_broken(client: Client, requests: Requests, operation: str, brk: Break,
                fill: dict[str, dict[str, Maker]]) -> None:
    body = orjson.dumps(requests.broken(operation, brk, fill.get(operation)))
    resp = client.send(requests.service, route(requests, operation), operation, body)
    expect_refused(resp, "SerializationException" if brk.wrong_type else "InvalidInputException", brk.member)


def test_fuzz_every_implemented_operation_from_botocores_model(embedded_server: Server, tmp_path: Path
                                                                ) -> None:
    real = real_resources(embedded_server, tmp_path)
    fill = known(real)
    client = Client(embedded_server.url)
    pid = embedded_server.proc.pid  # type: ignore[union-attr]
    rss_before = rss_mb(pid)
    rng = random.Random(SEED)
    services = {s: Requests(s, random.Random(f"{SEED}-{s}")) for s in coverage.SERVICES}
    operations = [(s, op) for s, ops in coverage.implemented().items() for op in sorted(ops)]
    assert {s for s, _ in operations} == set(coverage.SERVICES) and len(operations) > 40

    every_break = []
    for service, op in operations:  # each rule of each operation broken once, then valid ones
        requests = services[service]
        for brk in requests.breaks(op):
            every_break.append((service, op, brk))
            send_broken(client, requests, op, brk, fill)
        for _ in range(VALID_EACH):
            client.send(service, route(requests, op), op, orjson.dumps(requests.request(op, fill.get(op))))

    raw_bodies(client)
    nested_filters(client, real["group"])

    while client.sent < TOTAL:  # more of both, in new surroundings
        service, op, brk = rng.choice(every_break)
        requests = services[service]
        if rng.random() < 0.5:
            client.send(service, route(requests, op), op, orjson.dumps(requests.request(op, fill.get(op))))
        else:
            send_broken(client, requests, op, brk, fill)

    assert client.by_status.get(200, 0) > 100, client.by_status  # valid requests do get through
    assert httpx.get(embedded_server.url + "/health", timeout=10).json()["status"] == "ok"
    growth = rss_mb(pid) - rss_before
    assert growth < RSS_GROWTH_MB, f"RSS grew {growth:.0f} MB over {client.sent} requests"


def raw_bodies(client: Client) -> None:
    """Bodies that are no request of the model: each route answers them as a client error."""
    deep = b"[" * 50_000 + b"]" * 50_000
    bodies = [b"", b"{not json", b"[1, 2]", b"null", b'"text"', b"{}" * 3, deep, b'{"a": ' * 5_000,
              b'{"numResults": NaN}', b'{"numResults": 1e999}', b'{"numResults": 1234567890123456789012345}',
              b'{"name": "\xff\xfe"}', b'{"campaignArn": "a", "campaignArn": 5}']
    for service, path, operation in [
            ("personalize", "/", "ListDatasetGroups"), ("personalize", "/", "CreateDatasetGroup"),
            ("personalize-events", "/events", "PutEvents"), ("personalize-events", "/items", "PutItems"),
            ("personalize-runtime", "/recommendations", "GetRecommendations"),
            ("personalize-runtime", "/personalize-ranking", "GetPersonalizedRanking")]:
        for body in bodies:
            client.send(service, path, operation, body)
        for content_type in ("text/plain", "application/octet-stream", "application/json; charset=latin-1"):
            client.send(service, path, operation, b'{"numResults": "5"}', content_type)
    # the issue's probes, each once accepted
    issue = client.send("personalize-runtime", "/recommendations", "GetRecommendations", orjson.dumps(
        {"campaignArn": "arn:aws:personalize:us-east-1:000000000000:campaign/x",
         "filterValues": {f"K{i}": "v" for i in range(100_000)}}))
    assert issue.status_code in (400, 413), issue.text[:300]
    expect_refused(client.send("personalize-runtime", "/recommendations", "GetRecommendations",
                               b'{"numResults": "5"}'), "SerializationException", "numResults")
    expect_refused(client.send("personalize", "/", "CreateCampaign", orjson.dumps(
        {"name": "c", "solutionVersionArn": "arn:aws:personalize:us-east-1:000000000000:solution/s/v",
         "minProvisionedTPS": 2 ** 63})), "InvalidInputException", "minProvisionedTPS")
    expect_refused(client.send("personalize", "/", "CreateDatasetGroup", orjson.dumps(
        {"name": "g", "roleArn": "any string"})), "InvalidInputException", "roleArn")


def nested_filters(client: Client, group: str) -> None:
    """CreateFilter with parentheses nested 1..1,200 deep (400 deep is under the 2,500-character
    limit, and was once a 500 RecursionError): up to MAX_DEPTH a filter, deeper a clear refusal."""
    for depth in (1, 5, MAX_DEPTH, MAX_DEPTH + 1, 32, 100, 400, 1_200):
        expression = "INCLUDE ItemID WHERE " + "(" * depth + 'Items.GENRES IN ("x")' + ")" * depth
        resp = client.send("personalize", "/", "CreateFilter", orjson.dumps(
            {"name": f"nested-{depth}", "datasetGroupArn": group, "filterExpression": expression}))
        if depth <= MAX_DEPTH:
            assert resp.status_code == 200, resp.text
            continue
        expect_refused(resp, "InvalidInputException", "filterExpression")
        too_long = len(expression) > 2_500  # botocore's limit, checked first
        assert ("at most 2500 characters" if too_long else f"nest at most {MAX_DEPTH} deep") in \
            resp.json()["message"], resp.text
