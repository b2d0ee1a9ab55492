"""What every control-plane handler shares: the request base, the caller's context, the
registry of operations, pages, and the resource family as one table row.

A family (`Family`) says where its ARN, list key, summary fields and parent are; `register`
turns that row into its Describe, List and (where plain) Delete operations, and `Family.add`
stores what a Create made with its tags, so account scoping, quotas, tags and name clashes
are answered alike for every resource.
"""
from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kernel.contract import dataset_group_name
from kernel.dataset_schema import Schema, parse_schema
from kernel.locations import LocationRefused
from kernel.settings import Settings
from serving.accounts import caller, caller_region, visible
from serving.control.store import AlreadyExists, Body, ControlStore, camel
from serving.errors import (
    InvalidInputException,
    InvalidNextTokenException,
    LimitExceededException,
    ResourceAlreadyExistsException,
    ResourceInUseException,
    ResourceNotFoundException,
    TooManyTagsException,
)
from serving.quotas import quota
from serving.quotas import refusal as quota_refusal
from serving.wire import Arn

if TYPE_CHECKING:
    from serving.control.ports import DatasetFiles
    from serving.models import Models

TARGET_PREFIX = "AmazonPersonalize."  # X-Amz-Target: AmazonPersonalize.<Operation>
Name = Annotated[str, StringConstraints(min_length=1, max_length=63,
                                        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9\-_]*$")]


class Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tag(Req):
    tagKey: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    tagValue: Annotated[str, StringConstraints(min_length=0, max_length=256)]


Tags = Annotated[list[Tag], Field(max_length=200)]
MAX_TAGS = 50  # Personalize's: tags per resource
TAGS = "tags"  # where a resource's body keeps them, as [{"tagKey", "tagValue"}] in their order


def tag_list(tags: dict[str, str]) -> list[Body]:
    """Tags as the wire and the store have them, after checking Personalize's rules: keys and
    values of `aws:` are AWS's own, and a resource has at most MAX_TAGS. Tags are sensitive in
    Personalize's model: a refusal does not repeat them."""
    if any(text.lower().startswith("aws:") for tag in tags.items() for text in tag):
        raise InvalidInputException("a tag key or value begins with aws:, which AWS keeps for its own")
    if len(tags) > MAX_TAGS:
        raise TooManyTagsException(f"a resource has at most {MAX_TAGS} tags; this would have {len(tags)}")
    return [{"tagKey": k, "tagValue": v} for k, v in tags.items()]


def tags_of(given: list[Tag] | None) -> dict[str, str]:
    """A request's tags by key; a key given twice is refused (one value per key)."""
    out: dict[str, str] = {}
    for tag in given or ():
        if tag.tagKey in out:
            raise InvalidInputException("a tag key is given twice; a resource has one value per key")
        out[tag.tagKey] = tag.tagValue
    return out


class Page(Req):
    nextToken: Annotated[str, StringConstraints(max_length=1500)] | None = None
    maxResults: Annotated[int, Field(ge=1, le=100)] | None = None


class ListByDatasetGroup(Page):
    datasetGroupArn: Arn | None = None


@dataclass
class Ctx:
    settings: Settings
    resources: ControlStore
    datasets: DatasetFiles
    models: Models | None = None  # deployed artifacts (the API process; not the trainer)
    wake_jobs: Callable[[], None] = field(default=lambda: None)

    @property
    def account(self) -> str:
        """The caller's account (serving/accounts.py): what it creates is named in it."""
        return caller(self.settings.account)

    @property
    def region(self) -> str:
        """The caller's region (serving/accounts.py): what it creates is named in it too."""
        return caller_region(self.settings.region)

    def arn(self, kind: str, name: str) -> str:
        return self.settings.arn(kind, name, self.account, self.region)

    def sees(self, arn: str) -> bool:
        """Whether `arn` is the caller's: of its account and its region."""
        return visible(arn, self.account, self.region)


# a handler that waits on I/O (erasing data) returns an awaitable, run on the event loop
Handler = Callable[[Any, Ctx], Body | Awaitable[Body]]
OPERATIONS: dict[str, tuple[type[Req], Handler]] = {}


def operation(name: str, model: type[Req]) -> Callable[[Handler], Handler]:
    def register_handler(fn: Handler) -> Handler:
        OPERATIONS[name] = (model, fn)
        return fn
    return register_handler


def paginate(items: list[Body], page: Page, key: str, summary: tuple[str, ...]) -> Body:
    """Personalize-style pages: an opaque nextToken and 1..100 results (default 100)."""
    start = 0
    if page.nextToken:
        try:
            start = int(base64.urlsafe_b64decode(page.nextToken.encode()).decode())
        except ValueError:
            raise InvalidNextTokenException("the nextToken is not valid") from None
    end = start + (page.maxResults or 100)
    out: Body = {key: [{k: it[k] for k in summary if k in it} for it in items[start:end]]}
    if end < len(items):
        out["nextToken"] = base64.urlsafe_b64encode(str(end).encode()).decode()
    return out


def listed(ctx: Ctx, kind: str, parent: str | None = None) -> list[Body]:
    """What a List operation shows: the caller's account's resources in its region only; a
    parent of another account or region is not found, as it is for every other operation."""
    if parent is not None and not ctx.sees(parent):
        raise ResourceNotFoundException(f"{parent} does not exist")
    return ctx.resources.list(kind, parent, account=ctx.account, region=ctx.region)


def given(req: Req, *fields: str) -> Body:
    """The request's `fields` that the caller gave: what an Update changes as sent."""
    return {f: getattr(req, f) for f in fields if getattr(req, f) is not None}


def children(ctx: Ctx, parent: str) -> list[tuple[Family, Body]]:
    """Every resource whose parent is `parent`, of every family, with its family."""
    return [(f, body) for f in FAMILIES.values() for body in ctx.resources.list(f.kind, parent)]


def location_allowed(ctx: Ctx, member: str, location: str) -> None:
    """Refuse, when a job is created, a location the job would not be allowed to use."""
    try:
        ctx.settings.locations.check(location)
    except LocationRefused as exc:
        raise InvalidInputException(f"{member}: {exc}") from None


def within_quota(ctx: Ctx, kind: str) -> None:
    """Refuse a create that would take the caller's account past its quota of `kind` in its
    region (AWS's quotas are per account and region)."""
    limit = quota(ctx.settings.quotas, ctx.account, kind)
    if limit is not None and len(ctx.resources.list(kind, account=ctx.account, region=ctx.region)) >= limit:
        raise LimitExceededException(quota_refusal(kind, limit))


def require(ctx: Ctx, arn: str, kind: str, what: str) -> Body:
    """The resource, if it exists in the caller's account and region; another account's or
    another region's is not found."""
    body = ctx.resources.get(arn, kind) if ctx.sees(arn) else None
    if body is None:
        raise ResourceNotFoundException(f"{what} {arn} does not exist")
    return body


def group_schema(resources: ControlStore, group: str, dataset_type: str) -> Schema | None:
    """The schema of the dataset group's (by name) dataset of this type; None without one."""
    dataset = next((d for d in resources.list("dataset") if d["datasetType"] == dataset_type
                    and dataset_group_name(d["datasetGroupArn"]) == group), None)
    schema = None if dataset is None else resources.get(dataset["schemaArn"], "schema")
    return None if schema is None else parse_schema(schema["schema"])


FAMILIES: dict[str, Family] = {}  # kind -> its family, as `register` saw them


# why a resource may not be deleted now (ResourceInUseException's message), or None
InUse = Callable[[Ctx, Body], str | None]
# what Describe and List show beyond the stored body (a solution's latest version, a
# recommender's status from its trainings)
Described = Callable[[Ctx, Body], Body]
# refuses (InvalidInputException) tags a resource may not have, given all it would have
TagsChecked = Callable[[Ctx, Body, dict[str, str]], None]


@dataclass(frozen=True)
class Family:
    """One resource family: its control-store kind (the ARN's resource type, as in
    "dataset-import-job"), the requests that name one (`<kind>Arn`) and list them, the fields
    of a list's summaries, the request field naming the parent a List is filtered by, and
    where Personalize's List answer names its list when not `<kind>s`."""
    kind: str
    arn_request: type[Req]
    list_request: type[Req]
    summary: tuple[str, ...]
    parent: str | None = None
    list_key: str | None = None
    described: Described | None = None
    view: Callable[[Body], Body] | None = None  # how Describe and List show a stored body
    newest_first: bool = False
    takes_tags: bool = True  # whether its Create takes tags (and TagResource its ARN)
    fixed_tags: tuple[str, ...] = ()  # prefixes of tags only its Create sets (what they mean stays)
    tags_checked: TagsChecked | None = None  # tags that mean something to it (an A/B split's)

    @property
    def key(self) -> str:
        return camel(self.kind)

    @property
    def noun(self) -> str:
        return self.kind.replace("-", " ")

    @property
    def operations(self) -> tuple[str, str, str]:
        pascal = self.key[0].upper() + self.key[1:]
        return f"Describe{pascal}", f"List{pascal}s", f"Delete{pascal}"

    def get(self, ctx: Ctx, arn: str) -> Body:
        """The caller's resource of this family; not found otherwise."""
        return require(ctx, arn, self.kind, self.noun)

    def within_quota(self, ctx: Ctx) -> None:
        within_quota(ctx, self.kind)

    def only_one(self, ctx: Ctx, parent: str) -> None:
        """Refuse a second one under `parent`: a dataset group has one event tracker and one
        metric attribution."""
        if ctx.resources.count_children(parent, self.kind):
            article = "an" if self.noun[0] in "aeiou" else "a"
            raise ResourceAlreadyExistsException(f"dataset group {parent} already has {article} {self.noun}")

    def add(self, ctx: Ctx, arn: str, name: str, body: Body, parent: str | None = None,
            taken: str | None = None, tags: list[Tag] | None = None) -> None:
        """Store what a Create made, with its `tags`; `taken` says why the ARN exists already,
        when its default (the ARN) is not what Personalize would say."""
        if tags:
            given = tags_of(tags)
            if self.tags_checked:
                self.tags_checked(ctx, body, given)
            body = body | {TAGS: tag_list(given)}
        try:
            ctx.resources.create(self.kind, arn, name, body, parent=parent)
        except AlreadyExists:
            raise ResourceAlreadyExistsException(taken or f"{self.noun} {arn} already exists") from None


def register(family: Family, *, delete: bool = False, in_use: InUse | None = None) -> Family:
    """Register the family's Describe and List, and its Delete where deleting is plain: the
    resource goes unless `in_use` says why it may not."""
    describing, listing, deleting = family.operations

    view = family.view or (lambda body: body)

    def describe(req: Req, ctx: Ctx) -> Body:
        body = view(family.get(ctx, getattr(req, family.key + "Arn")))
        body.pop(TAGS, None)  # ListTagsForResource's
        return {family.key: family.described(ctx, body) if family.described else body}

    def list_all(req: Page, ctx: Ctx) -> Body:
        parent = getattr(req, family.parent) if family.parent else None
        found = [view(body) for body in listed(ctx, family.kind, parent)]
        if family.described:
            found = [family.described(ctx, body) for body in found]
        found = found[::-1] if family.newest_first else found
        return paginate(found, req, family.list_key or family.key + "s", family.summary)

    def remove(req: Req, ctx: Ctx) -> Body:
        arn = getattr(req, family.key + "Arn")
        body = family.get(ctx, arn)
        if in_use and (why := in_use(ctx, body)):
            raise ResourceInUseException(why)
        ctx.resources.delete(arn)
        return {}

    FAMILIES[family.kind] = family
    operation(describing, family.arn_request)(describe)
    operation(listing, family.list_request)(list_all)
    if delete:
        operation(deleting, family.arn_request)(remove)
    return family
