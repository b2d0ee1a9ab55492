"""Filters on the control plane (CreateFilter & co.) and their inputs at request time.

CreateFilter parses the expression (serving.filters) and refuses a malformed one with the
column of the mistake. At request time `FilterInputs` gives the evaluator the item
metadata in the model's item order (a Catalog built once per model and items dataset
version) and the user's attributes, both read from the datasets on disk.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import StringConstraints

from kernel.contract import dataset_group_name
from kernel.datasets import DatasetStore
from serving.control.base import (
    Ctx,
    Family,
    ListByDatasetGroup,
    Name,
    Req,
    Tags,
    group_schema,
    operation,
    register,
)
from serving.control.groups import GROUPS
from serving.control.store import Body
from serving.errors import InvalidInputException
from serving.exclusions import Allowed
from serving.filters import Catalog, Filter, FilterError, parse
from serving.filters import allowed as allowed_items
from serving.models import Model, freeze_loaded
from serving.wire import Arn

ALLOWED_CACHE = 256  # filters x filter values answered from memory: 125 KB each at 1M items


class CreateFilter(Req):
    name: Name
    datasetGroupArn: Arn
    filterExpression: Annotated[str, StringConstraints(min_length=1, max_length=2500)]
    tags: Tags | None = None


class FilterArn(Req):
    filterArn: Arn


FILTERS = register(Family("filter", FilterArn, ListByDatasetGroup, (
    "name", "filterArn", "creationDateTime", "lastUpdatedDateTime", "datasetGroupArn", "failureReason",
    "status"), parent="datasetGroupArn", list_key="Filters"), delete=True)


@operation("CreateFilter", CreateFilter)
def create_filter(req: CreateFilter, ctx: Ctx) -> Body:
    FILTERS.within_quota(ctx)
    GROUPS.get(ctx, req.datasetGroupArn)
    try:
        parse(req.filterExpression)
    except FilterError as exc:
        raise InvalidInputException(f"filterExpression: {exc}") from None
    arn = ctx.arn(FILTERS.kind, req.name)
    body = {"name": req.name, "filterArn": arn, "datasetGroupArn": req.datasetGroupArn,
            "filterExpression": req.filterExpression, "status": "ACTIVE"}
    FILTERS.add(ctx, arn, req.name, body, parent=req.datasetGroupArn, tags=req.tags)
    return {"filterArn": arn}


class FilterInputs:
    """Parsed filters, item catalogues, user attributes and item-field filters' answers, cached:
    rebuilt only when the filter, the model or the dataset's manifest changes. The filter's row
    and the manifests are themselves re-read at most every ttl_s (like campaigns), not on every
    request: those reads were ~10% of a filtered GetRecommendations (bench/serve.py)."""

    def __init__(self, ctx: Ctx, ttl_s: float = 1.0) -> None:
        self.ctx, self.ttl_s = ctx, ttl_s
        self.datasets = DatasetStore.of(ctx.settings)
        self._reads: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._filters: dict[str, tuple[str, Filter]] = {}
        self._catalogs: dict[str, tuple[tuple[str, ...], Catalog]] = {}
        self._users: dict[str, tuple[tuple[str, ...], dict[str, dict[str, Any]]]] = {}
        self._allowed: OrderedDict[tuple[Any, ...], Allowed] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, ...], read: Callable[[], Any]) -> Any:
        """read(), or what it returned less than ttl_s ago."""
        now = time.monotonic()
        hit = self._reads.get(key)
        if hit is None or now - hit[0] > self.ttl_s:
            hit = self._reads[key] = (now, read())
        return hit[1]

    def filter(self, arn: str, group: str) -> Filter:
        body = self._recent(("filter", arn), lambda: FILTERS.get(self.ctx, arn))
        if dataset_group_name(body["datasetGroupArn"]) != group:
            raise InvalidInputException(f"filter {arn} belongs to another dataset group than the campaign")
        hit = self._filters.get(arn)
        if hit is None or hit[0] != body["filterExpression"]:
            hit = self._filters[arn] = (body["filterExpression"], parse(body["filterExpression"]))
        return hit[1]

    def _version(self, group: str, kind: str) -> tuple[str, ...]:
        return self._recent(("dataset", group, kind),
                            lambda: tuple(p.name for p in self.datasets.manifest(group, kind).parts))

    def item_fields(self, group: str) -> tuple[str, ...]:
        """The fields of the group's ITEMS dataset schema (none without one): a field the schema
        has is one a filter may name before any item has a value of it."""
        def read() -> tuple[str, ...]:
            schema = group_schema(self.ctx.resources, group, "ITEMS")
            return () if schema is None else schema.names
        return self._recent(("item-fields", group), read)

    def items_version(self, group: str) -> tuple[str, ...]:
        """What the group's ITEMS dataset is made of now (its parts), as of at most ttl_s ago."""
        return self._version(group, "ITEMS")

    def _catalog_version(self, model: Model, group: str) -> tuple[str, ...]:
        """What the catalog of `model` over the group's items is built from, as of at most
        ttl_s ago: one look-up per call, since a filtered request asks three times. A model that
        scores items added since training (serving.new_items) has a catalog per vocabulary."""
        return self._recent(("catalog", model.arn, str(model.n_items), group), lambda: (
            model.arn, str(model.n_items), *self.items_version(group), "fields:", *self.item_fields(group)))

    def catalog_ready(self, model: Model, group: str) -> bool:
        """Whether catalog() answers from its cache; else it reads and indexes the items
        dataset (~10 s at 1M items), which callers on an event loop run in a thread."""
        hit = self._catalogs.get(model.arn)
        return hit is not None and hit[0] == self._catalog_version(model, group)

    def catalog(self, model: Model, group: str) -> Catalog:
        """Every field of the items' schema has a column, None for an item without a value: with
        no items imported yet, a filter on one matches no item, as Personalize's does."""
        version = self._catalog_version(model, group)
        hit = self._catalogs.get(model.arn)
        if hit is None or hit[0] != version:
            with self._lock:  # one build: requests that waited on it find it done
                hit = self._catalogs.get(model.arn)
                if hit is not None and hit[0] == version:
                    return hit[1]
                table = self.datasets.read(group, "ITEMS")
                columns: dict[str, list[Any]] = {}
                if table.num_rows:
                    rows = {r.pop("ITEM_ID"): r for r in table.to_pylist()}
                    for name in table.column_names:
                        if name != "ITEM_ID":
                            columns[name] = [rows.get(i, {}).get(name) for i in model.item_ids]
                for name in self.item_fields(group):
                    if name != "ITEM_ID" and name not in columns:
                        columns[name] = [None] * model.n_items
                hit = self._catalogs[model.arn] = (version, Catalog.build(model.n_items, columns))
                freeze_loaded()
        return hit[1]

    def allowed(self, f: Filter, model: Model, group: str, *, values: dict[str, str] | None,
                interactions: Callable[[], list[tuple[int, str]]], user: Callable[[], dict[str, Any] | None],
                current_item: int | None) -> Allowed:
        """The items `f` lets through for this request (serving.filters.allowed). A filter on
        item fields alone depends only on the filter values: its answer is computed once (O(catalog))
        and reused while the catalog stands; one on the user's interactions, attributes or the
        current item is computed per request. Raises FilterError / FilterValueError."""
        catalog = self.catalog(model, group)
        per_request = f.uses_interactions or f.uses_users or f.uses_current_item
        key = (f.expression, self._catalog_version(model, group), *sorted((values or {}).items()))
        if not per_request and (hit := self._allowed.get(key)) is not None:
            self._allowed.move_to_end(key)
            return hit
        answer = Allowed.of(allowed_items(f, catalog, values=values,
                                          interactions=interactions() if f.uses_interactions else (),
                                          user=user() if f.uses_users else None, current_item=current_item))
        if not per_request:
            self._allowed[key] = answer
            while len(self._allowed) > ALLOWED_CACHE:
                self._allowed.popitem(last=False)
        return answer

    def user(self, group: str, user_id: str) -> dict[str, Any] | None:
        version = self._version(group, "USERS")
        hit = self._users.get(group)
        if hit is None or hit[0] != version:
            with self._lock:
                table = self.datasets.read(group, "USERS")
                users = {r.pop("USER_ID"): r for r in table.to_pylist()} if table.num_rows else {}
                hit = self._users[group] = (version, users)
        return hit[1].get(user_id)
