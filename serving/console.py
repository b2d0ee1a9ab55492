"""The web console: a page for a person at `/console`, and the few facts it needs that the
boto3 APIs do not give, under `/console/api/`.

The page (serving/console_page/: HTML, one JS module, CSS) holds no data: everything it shows
comes from the control plane, the runtime and PutEvents, which it calls as boto3 does, signed
with SigV4 in the browser. What those APIs lack (a dataset's row count and sample, item titles,
a user's history as a campaign sees it, users to try, the events arriving) comes from the
read-only GETs here. serving/auth.py signs them as it signs the APIs, and each acts only within
the caller's account and region (`require`: another account's ARN is not found). Like the
control plane they answer only the server's own host names (serving/hosts.py: a page that
rebinds its DNS name to a keyless loopback server must not read them) and send no CORS.
"""
from __future__ import annotations

import asyncio
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Annotated, Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from kernel.contract import anonymous_key, dataset_group_name, events_topic
from kernel.datasets import DatasetStore
from serving.attribution_report import report
from serving.console_feed import FEED_EVENTS, Feed, feed_event, format_cursor, parse_cursor
from serving.control.base import Ctx, require
from serving.deployed import Campaigns, Deployed
from serving.errors import AccessDeniedException, ResourceNotFoundException
from serving.hosts import allowed_hosts, host_name
from serving.models import Model
from serving.wire import Arn
from stream.store import SessionStore

SAMPLE_ROWS = 10
HISTORY_SHOWN = 20  # a person reads the latest few; the model may hold hundreds
USERS_OFFERED = 50
MAX_TITLES = 100
TITLE_COLUMNS = ("TITLE", "NAME", "PRODUCT_NAME", "ITEM_NAME", "PRODUCT_TITLE")
PAGE = {"": ("index.html", "text/html; charset=utf-8"),
        "console.js": ("console.js", "text/javascript; charset=utf-8"),
        "console.css": ("console.css", "text/css; charset=utf-8")}
# the page loads nothing from elsewhere and runs no inline script: a page that cannot be framed,
# nor made to send its signed calls to another origin
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                "img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; "
                "frame-ancestors 'none'", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
UserId = Annotated[str, Query(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]
ItemIds = Annotated[list[str], Query(alias="itemId", max_length=MAX_TITLES)]
Cursor = Annotated[str | None, Query(max_length=4000, pattern=r"^(\d+|\d+:\d+(,\d+:\d+)*)?$")]


# ---- pure: what the endpoints answer, from what they read ----

def jsonable(value: object) -> object:
    """A dataset cell as JSON carries it: NaN and infinities (JSON has none) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def sample_of(table: pa.Table, n: int = SAMPLE_ROWS) -> dict[str, Any]:
    """The first `n` rows of `table`: its columns and the rows as lists, JSON-ready."""
    head = table.slice(0, n).to_pylist()
    names = table.column_names
    return {"columns": names, "rows": [[jsonable(r[c]) for c in names] for r in head]}


def title_column(columns: Sequence[str]) -> str | None:
    """The ITEMS column a person knows an item by, if the schema has one (case-insensitive)."""
    upper = {c.upper(): c for c in columns}
    return next((upper[name] for name in TITLE_COLUMNS if name in upper), None)


def latest_history(item_ids: Sequence[str], codes: Sequence[int], times: Sequence[float],
                   types: Sequence[str], n: int = HISTORY_SHOWN) -> list[dict[str, Any]]:
    """A campaign's view of a user (serving.models.Model.history: as of training, then streamed):
    its last `n` interactions, newest first. `types` are those of the last len(types), the
    streamed ones; the artifact's have none here."""
    start = len(codes) - len(types)
    return [{"itemId": item_ids[int(codes[i])], "timestamp": float(times[i]),
             "eventType": types[i - start] if i >= start else None, "streamed": i >= start}
            for i in range(len(codes) - 1, max(len(codes) - n, 0) - 1, -1)]


def most_active(offsets: np.ndarray, n: int = USERS_OFFERED) -> list[int]:
    """Codes of the `n` users with the longest history (CSR `offsets`), longest first; ties by code."""
    lengths = np.diff(offsets)
    return [int(u) for u in np.lexsort((np.arange(len(lengths)), -lengths))[:n]]


# ---- reads of the datasets, cached while their manifest stays the same ----

class Cached(NamedTuple):
    version: bytes  # the manifest it was read under
    value: Any


class DatasetReads:
    """Samples and titles from the datasets. A read is kept until the dataset's manifest changes
    (an import, a PutItems), for a few datasets at a time: the console's reads cost one read of
    the dataset per change, not one per poll."""

    def __init__(self, datasets: DatasetStore, keep: int = 8) -> None:
        self.datasets, self.keep = datasets, keep
        self._cache: OrderedDict[tuple[str, str, str], Cached] = OrderedDict()
        self._lock = threading.Lock()  # reads run in threads; two reading one dataset is harmless

    def _cached(self, key: tuple[str, str, str], read: Callable[[], Any]) -> Any:
        version = self.datasets.manifest(key[0], key[1]).to_json()
        with self._lock:
            hit = self._cache.get(key)
        if hit is None or hit.version != version:
            hit = Cached(version, read())
        with self._lock:
            self._cache[key] = hit
            self._cache.move_to_end(key)
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        return hit.value

    def summary(self, group: str, kind: str) -> dict[str, Any]:
        """Rows stored (every part's, as committed) and a sample from the newest part's first row
        group: a bounded read, however large the dataset."""
        def read() -> dict[str, Any]:
            manifest = self.datasets.manifest(group, kind)
            if not manifest.parts:
                return {"rows": 0, "sample": {"columns": [], "rows": []}, "lastCommit": None}
            parts = self.datasets.parts(group, kind)
            newest = manifest.parts[-1]
            got = parts.objects.get(parts.prefix + newest.name)
            sample = pq.ParquetFile(pa.BufferReader(got.body)).read_row_group(0) if got else pa.table({})
            sample = sample.drop_columns([c for c in sample.column_names if c.startswith("__")])
            return {"rows": manifest.rows, "sample": sample_of(sample), "lastCommit": newest.at}
        return self._cached((group, kind, "summary"), read)

    def titles(self, group: str, item_ids: Sequence[str]) -> dict[str, str]:
        """The titles of `item_ids` that the ITEMS dataset has."""
        def read() -> pa.Table | None:
            table = self.datasets.read(group, "ITEMS")
            column = title_column(table.column_names)
            return None if column is None or "ITEM_ID" not in table.column_names else \
                pa.table({"id": table["ITEM_ID"].cast(pa.string()), "title": table[column].cast(pa.string())})
        table = self._cached((group, "ITEMS", "titles"), read)
        if table is None or not item_ids:
            return {}
        hit = table.filter(pc.is_in(table["id"], value_set=pa.array(list(item_ids), pa.string())))
        return {i: t for i, t in zip(hit["id"].to_pylist(), hit["title"].to_pylist(), strict=True) if t}


# ---- the routes ----

def json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers={"Cache-Control": "no-store"})


def page_asset(name: str) -> Response:
    """One of the page's files, by the name the page knows it by; nothing else is ever opened."""
    if name not in PAGE:
        raise ResourceNotFoundException("the console has no such file")
    file, media = PAGE[name]
    body = (resources.files("serving") / "console_page" / file).read_bytes()
    return Response(body, media_type=media, headers=PAGE_HEADERS)


def make_router(ctx: Ctx, store: SessionStore, feed: Feed) -> APIRouter:
    """GET /console (the page), /console/<file>, and the read-only /console/api/ endpoints;
    `feed` reads the events the live view shows (the app closes it)."""
    hosts = allowed_hosts(ctx.settings.allowed_hosts, ctx.settings.host)

    def own_host(request: Request) -> None:
        name = host_name(request.headers.get("host", "localhost"))
        if hosts is not None and name not in hosts:
            raise AccessDeniedException(f"the console does not answer to Host {name[:100]!r}: add it "
                                        "to OPZ_ALLOWED_HOSTS if people reach this server by that name")

    router = APIRouter(tags=["console"], dependencies=[Depends(own_host)], include_in_schema=False)
    reads = DatasetReads(DatasetStore.of(ctx.settings))
    users: OrderedDict[str, list[str]] = OrderedDict()  # model ARN -> its most active users

    async def no_publish(_: Deployed) -> None:
        """The console serves no recommendation: the runtime publishes what the workers keep."""

    campaigns = Campaigns(ctx.resources, ctx.models, ctx.sees, no_publish) if ctx.models else None

    async def deployed(arn: str) -> Deployed:
        if campaigns is None:
            raise ResourceNotFoundException(f"campaign {arn} does not exist")
        return await campaigns.get(arn)

    @router.get("/console")
    async def index() -> Response:
        return page_asset("")

    @router.get("/console/{name}")
    async def asset(name: str) -> Response:
        return page_asset(name)

    @router.get("/console/api/dataset")
    async def dataset(datasetArn: Annotated[Arn, Query()]) -> Response:  # noqa: N803 - boto's name
        body = require(ctx, datasetArn, "dataset", "dataset")
        group = dataset_group_name(body["datasetGroupArn"])
        return json(await asyncio.to_thread(reads.summary, group, body["datasetType"]))

    @router.get("/console/api/titles")
    async def titles(datasetGroupArn: Annotated[Arn, Query()], item_ids: ItemIds = ()) -> Response:  # noqa: N803
        require(ctx, datasetGroupArn, "dataset-group", "dataset group")
        group = dataset_group_name(datasetGroupArn)
        return json({"titles": await asyncio.to_thread(reads.titles, group, item_ids)})

    @router.get("/console/api/users")
    async def some_users(campaignArn: Annotated[Arn, Query()]) -> Response:  # noqa: N803
        model = (await deployed(campaignArn)).model
        return json({"userIds": offered_users(users, model)})

    @router.get("/console/api/history")
    async def history(campaignArn: Annotated[Arn, Query()], userId: UserId) -> Response:  # noqa: N803
        d = await deployed(campaignArn)
        states, _ = await store.load([(d.group, userId), (d.group, anonymous_key(userId))])
        live = states[0] or states[1]
        past = d.model.history(userId, live.history if live is not None else ())
        return json({"history": latest_history(d.model.item_ids, past.codes, past.times, past.types)})

    @router.get("/console/api/events")
    async def events(datasetGroupArn: Annotated[Arn, Query()], after: Cursor = None) -> Response:  # noqa: N803
        require(ctx, datasetGroupArn, "dataset-group", "dataset group")
        got, positions = await feed.recent(events_topic(dataset_group_name(datasetGroupArn)),
                                           parse_cursor(after), FEED_EVENTS)
        return json({"events": [feed_event(e) for e in got],
                     "cursor": format_cursor(positions, not ctx.settings.kafka_bootstrap_servers)})

    @router.get("/console/api/attribution")
    async def attribution(metricAttributionArn: Annotated[Arn, Query()]) -> Response:  # noqa: N803
        """The metric attribution's report (serving.attribution_report): per source, and per arm
        of each A/B split with the lift."""
        body = require(ctx, metricAttributionArn, "metric-attribution", "metric attribution")
        return json(await asyncio.to_thread(report, ctx.settings, ctx.resources, body))

    return router


def offered_users(cache: OrderedDict[str, list[str]], model: Model, keep: int = 4) -> list[str]:
    """The model's most active users as of training, worked out once per model."""
    if model.arn not in cache:
        ids = list(model.known.users)
        cache[model.arn] = [ids[u] for u in most_active(model.known.csr["offsets"])]
        while len(cache) > keep:
            cache.popitem(last=False)
    return cache[model.arn]

