"""Tags on every resource whose Create takes them: TagResource, UntagResource,
ListTagsForResource.

A resource's tags are kept in its body (`base.TAGS`, in the order they were given), out of
its Describe. Personalize's rules hold: at most 50 per resource, one value per key, `aws:`
reserved; patterns and lengths are the service model's (serving/service_model.py).
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from serving.control.base import (
    FAMILIES,
    MAX_TAGS,
    TAGS,
    Ctx,
    Family,
    Req,
    Tags,
    operation,
    tag_list,
    tags_of,
)
from serving.control.store import Body
from serving.errors import InvalidInputException, ResourceNotFoundException, TooManyTagKeysException
from serving.wire import Arn


class TagResource(Req):
    resourceArn: Arn
    tags: Tags


class UntagResource(Req):
    resourceArn: Arn
    tagKeys: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=128)]],
                       Field(max_length=200)]


class ResourceArn(Req):
    resourceArn: Arn


def tagged(ctx: Ctx, arn: str) -> tuple[Family, Body]:
    """The caller's resource named by `arn` and its family, if that family takes tags."""
    body = ctx.resources.get(arn) if ctx.sees(arn) else None
    family = next((f for f in FAMILIES.values() if body and body.get(f.key + "Arn") == arn), None)
    if body is None or family is None:
        raise ResourceNotFoundException(f"resource {arn} does not exist")
    if not family.takes_tags:
        raise InvalidInputException(f"a {family.noun} takes no tags")
    return family, body


def current(body: Body) -> dict[str, str]:
    return {t["tagKey"]: t["tagValue"] for t in body.get(TAGS, ())}


def _fixed(family: Family, keys: set[str]) -> None:
    if family.fixed_tags and any(k.startswith(family.fixed_tags) for k in keys):
        raise InvalidInputException(f"tags beginning with {', '.join(family.fixed_tags)} of a {family.noun} "
                                    "are set when it is created")


def _retag(ctx: Ctx, family: Family, body: Body, tags: dict[str, str]) -> None:
    """Store the resource's tags, once what they would mean to it is checked."""
    listed = tag_list(tags)
    if family.tags_checked:
        family.tags_checked(ctx, body, tags)
    ctx.resources.update(body[family.key + "Arn"], {TAGS: listed})


@operation("TagResource", TagResource)
def tag_resource(req: TagResource, ctx: Ctx) -> Body:
    family, body = tagged(ctx, req.resourceArn)
    new = tags_of(req.tags)
    _fixed(family, set(new))
    _retag(ctx, family, body, current(body) | new)
    return {}


@operation("UntagResource", UntagResource)
def untag_resource(req: UntagResource, ctx: Ctx) -> Body:
    if len(req.tagKeys) > MAX_TAGS:
        raise TooManyTagKeysException(f"at most {MAX_TAGS} tag keys at once, as a resource has at most "
                                      f"{MAX_TAGS} tags")
    family, body = tagged(ctx, req.resourceArn)
    _fixed(family, set(req.tagKeys))
    _retag(ctx, family, body, {k: v for k, v in current(body).items() if k not in set(req.tagKeys)})
    return {}


@operation("ListTagsForResource", ResourceArn)
def list_tags(req: ResourceArn, ctx: Ctx) -> Body:
    _, body = tagged(ctx, req.resourceArn)
    return {"tags": body.get(TAGS, [])}
