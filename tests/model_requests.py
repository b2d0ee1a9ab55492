"""Requests made from botocore's service models: valid ones, and ones that break one rule each.

The model-driven fuzz run (tests/e2e/test_fuzz.py) and the checker's unit tests
(tests/unit/test_service_model.py) both use it. It reads botocore's models itself and knows
nothing of serving/service_model.py but its documented EXTENSIONS, so the two are checked
against each other: every `Break` says which member it breaks (the path as the server must
name it), which rule, and whether the answer must be SerializationException (wrong JSON type)
or InvalidInputException.
"""
from __future__ import annotations

import itertools
import random
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import botocore.loaders

from serving.service_model import EXTENSIONS

Maker = Callable[[random.Random], Any]
Step = tuple[str, Any]  # ("member", name) | ("index", 0) | ("value", key) | ("key", key)
MISSING: Any = object()  # a member left out of the request
DEFAULT: Any = object()  # what a `known` maker returns to have the member made as any other
ACCOUNT = "000000000000"
KEY_SHOWN = 32  # as the server quotes a map key in a path: at most 32 characters, then "..."

# a valid value for each pattern botocore's models use, and one that breaks it (within its length)
PATTERNS: dict[str, tuple[Maker, str]] = {
    r"^[a-zA-Z0-9][a-zA-Z0-9\-_]*": (lambda r: f"fuzz-{r.randrange(10**9)}", "-no name!"),
    r"arn:([a-z\d-]+):personalize:.*:.*:.+": (
        lambda r: f"arn:aws:personalize:us-east-1:{ACCOUNT}:{r.choice(KINDS)}/fuzz-{r.randrange(10**6)}",
        "not-an-arn"),
    r"arn:([a-z\d-]+):iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+": (
        lambda r: f"arn:aws:iam::{ACCOUNT}:role/fuzz{r.randrange(100)}", "arn:aws:iam::123:role/short"),
    r"arn:aws.*:kms:.*:[0-9]{12}:key/.*": (lambda r: f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k{r.randrange(9)}",
                                         "arn:aws:kms:us-east-1:12:key/x"),
    r"(s3|http|https)://.+": (lambda r: f"s3://fuzz-bucket/{r.randrange(100)}.csv", "ftp://host/file.csv"),
    r"\p{ASCII}{0,1500}": (lambda r: "".join(r.choices(string.ascii_letters + "=", k=r.randint(1, 24))),
                           "caf\u00e9"),
    r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$": (lambda r: r.choice(["team", "caf\u00e9 42", "a:b/c=d+e-f@g_h"]),
                                        "<script>"),
    r"^[A-Za-z_]+$": (lambda r: "".join(r.choices(string.ascii_uppercase + "_", k=r.randint(1, 9))), "ITEM1"),
    r"[A-Za-z_][A-Za-z\d_]*": (lambda r: r.choice(["GENRES", "price_2", "_x"]), "1COLUMN"),
    r"rate\(\d+ days?\)": (lambda r: f"rate({r.randint(1, 30)} days)", "rate(1 hour)"),
    r"[A-Za-z0-9_]+": (lambda r: "".join(r.choices(string.ascii_letters + "_", k=r.randint(1, 12))), "a-b"),
    r"[A-Za-z\d_]+": (lambda r: "".join(r.choices(string.ascii_letters + "_", k=r.randint(1, 12))), "a b"),
    r"^[\x20-\x7E]*[\x21-\x7E]+[\x20-\x7E]*$": (lambda r: r.choice(["web", "email campaign"]), "   "),
}
KINDS = ("dataset-group", "dataset", "schema", "solution", "campaign", "filter", "event-tracker")
CHARS = string.ascii_letters + string.digits + " -_.:/\u00e9\u6f22\u00df"
WRONG: dict[str, list[Any]] = {  # values of each type's wrong JSON types (null is "absent")
    "string": [5, 1.5, True, [], {}], "integer": ["5", 5.5, True, [1]], "long": ["5", 5.5, False],
    "double": ["0.5", True, {}], "float": ["0.5", True, []], "boolean": ["true", 1, 0],
    "timestamp": [True, [], {}], "structure": ["x", 5, []], "list": ["x", {}, 5], "map": ["x", [], 5],
}
INT_BITS = {"integer": 31, "long": 63}
EPOCH = 1_735_689_600  # 2025-01-01: timestamps too are the same every run


@dataclass(frozen=True)
class Break:
    """One rule broken at one place of an operation's request."""
    path: tuple[Step, ...]
    member: str        # the path as the server's message names it
    rule: str          # type, max, min, count, enum, pattern, range, required, null
    wrong_type: bool   # SerializationException; else InvalidInputException
    make: Maker        # the breaking value (MISSING: leave the member out)


def key_label(key: str) -> str:
    return key[:KEY_SHOWN] + ("..." if len(key) > KEY_SHOWN else "")


class Requests:
    """One service's requests. `known`: member name -> maker, for members a test wants real
    (an existing trackingId) or meaningful (a filter expression) wherever they appear; a maker
    may return DEFAULT to leave that one to the model."""

    def __init__(self, service: str, rng: random.Random, known: Mapping[str, Maker] | None = None) -> None:
        self.service, self.rng, self.known = service, rng, dict(known or {})
        self.model = botocore.loaders.create_loader().load_service_model(service, "service-2")
        self.shapes: dict[str, dict[str, Any]] = self.model["shapes"]

    def input(self, operation: str) -> str:
        return self.model["operations"][operation]["input"]["shape"]

    def dropped(self, structure: str, member: str) -> frozenset[str]:
        """The rules of a member the server documents that it does not apply (EXTENSIONS)."""
        return EXTENSIONS.get((self.service, structure, member), frozenset())

    # ---- valid values ----

    def valid(self, name: str, member: str = "", known: Mapping[str, Maker] | None = None,
              dropped: frozenset[str] = frozenset()) -> Any:
        known = {**self.known, **(known or {})}
        if member in known and (value := known[member](self.rng)) is not DEFAULT:
            return value
        shape = {k: v for k, v in self.shapes[name].items() if k not in dropped}
        r, kind = self.rng, shape["type"]
        if kind == "structure":
            required = set(shape.get("required", ()))
            return {m: self.valid(ref["shape"], m, known, self.dropped(name, m))
                    for m, ref in shape["members"].items() if m in required or r.random() < 0.4}
        if kind in ("list", "map"):
            lo = shape.get("min", 0)
            n = r.randint(max(lo, 1 if r.random() < 0.8 else 0), max(lo, min(shape.get("max", 3), 3)))
            if kind == "list":
                return [self.valid(shape["member"]["shape"], "", known) for _ in range(n)]
            return self.entries(shape, n, known)
        if kind == "string":
            return self.text(shape)
        if kind in INT_BITS:
            bits = INT_BITS[kind]
            lo, hi = shape.get("min", -(2 ** bits)), shape.get("max", 2 ** bits - 1)
            return r.randint(max(lo, -5), min(hi, 1000))
        if kind in ("double", "float"):
            return round(r.uniform(max(shape.get("min", -1e3), -1e3), min(shape.get("max", 1e3), 1e3)), 3)
        if kind == "boolean":
            return r.random() < 0.5
        if kind == "timestamp":
            return round(EPOCH + r.uniform(0, 86400), 3)
        raise NotImplementedError(f"{name}: {kind}")

    def text(self, shape: dict[str, Any]) -> str:
        r = self.rng
        if "enum" in shape:
            return r.choice(shape["enum"])
        if "pattern" in shape:
            if shape["pattern"] not in PATTERNS:
                raise KeyError(f"no example for botocore's pattern {shape['pattern']!r}: add it to PATTERNS")
            return PATTERNS[shape["pattern"]][0](r)
        lo = shape.get("min", 0)
        return "".join(r.choices(CHARS, k=r.randint(lo, max(lo, min(shape.get("max", 24), 24)))))

    def entries(self, shape: dict[str, Any], n: int, known: Mapping[str, Maker] | None = None
                ) -> dict[str, Any]:
        """n entries of a map, with n distinct valid keys (fewer if its key shape has fewer)."""
        out: dict[str, Any] = {}
        for _ in range(n * 20):
            if len(out) == n:
                break
            out[self.valid(shape["key"]["shape"], "", known)] = self.valid(shape["value"]["shape"], "", known)
        return out

    def request(self, operation: str, known: Mapping[str, Maker] | None = None) -> dict[str, Any]:
        return self.valid(self.input(operation), "", known)

    # ---- broken ones ----

    def breaks(self, operation: str) -> list[Break]:
        """Every rule of the operation's request, each broken once (one place per member)."""
        return list(self._breaks(self.input(operation), (), "", frozenset()))

    def _breaks(self, name: str, path: tuple[Step, ...], member: str, dropped: frozenset[str]
                ) -> Iterator[Break]:
        shape = {k: v for k, v in self.shapes[name].items() if k not in dropped}
        kind = shape["type"]

        def brk(rule: str, make: Maker, *, wrong_type: bool = False, at: str = member,
                where: tuple[Step, ...] = path) -> Break:
            return Break(where, at, rule, wrong_type, make)

        if path:  # a body that is not an object is the dispatcher's business, not a member's
            yield brk("type", lambda r, k=kind: r.choice(WRONG[k]), wrong_type=True)
        lo, hi = shape.get("min"), shape.get("max")
        if kind == "string":
            if hi is not None:
                yield brk("max", lambda r, n=hi + 1: "x" * n)
            if lo:
                yield brk("min", lambda r, n=lo - 1: "x" * n)
            if "enum" in shape:
                yield brk("enum", lambda r: "NOT_ONE_OF_THEM")
            if "pattern" in shape:
                bad = PATTERNS[shape["pattern"]][1]
                if (lo or 0) <= len(bad) <= (hi if hi is not None else len(bad)):
                    yield brk("pattern", lambda r, b=bad: b)
        elif kind in INT_BITS:
            bits = INT_BITS[kind]
            if lo is not None:
                yield brk("range", lambda r, v=lo - 1: v)
            yield brk("range", lambda r, v=(hi + 1 if hi is not None else 2 ** bits): v)
        elif kind in ("double", "float"):
            if lo is not None:
                yield brk("range", lambda r, v=lo - 1: float(v))
            if hi is not None:
                yield brk("range", lambda r, v=hi + 1: float(v))
        elif kind == "list":
            entry = shape["member"]["shape"]
            if hi is not None:
                yield brk("count", lambda r, n=hi + 1: [self.valid(entry) for _ in range(n)])
            if lo:
                yield brk("count", lambda r, n=lo - 1: [self.valid(entry) for _ in range(n)])
            at = f"{member}[0]"
            yield brk("null", lambda r: None, wrong_type=True, at=at, where=(*path, ("index", 0)))
            yield from self._breaks(entry, (*path, ("index", 0)), at, frozenset())
        elif kind == "map":
            if hi is not None:
                yield brk("count", lambda r, n=hi + 1, s=shape: self.entries(s, n))
            key = self.valid(shape["key"]["shape"])  # made once: the member's path names it
            at = f"{member}[{key_label(key)}]"
            yield brk("null", lambda r: None, wrong_type=True, at=at, where=(*path, ("value", key)))
            for b in self._breaks(shape["key"]["shape"], (*path, ("key", None)), "", frozenset()):
                if b.rule != "type":  # JSON keys are strings
                    bad = b.make(random.Random(0))
                    yield Break((*path, ("key", bad)), f"{member}[{key_label(bad)}]", b.rule, False, b.make)
            yield from self._breaks(shape["value"]["shape"], (*path, ("value", key)), at, frozenset())
        elif kind == "structure":
            for m in shape.get("required", ()):
                at = f"{member}.{m}" if member else m
                yield brk("required", lambda r: MISSING if r.random() < 0.5 else None, at=at,
                          where=(*path, ("member", m)))
            for m, ref in shape["members"].items():
                at = f"{member}.{m}" if member else m
                yield from self._breaks(ref["shape"], (*path, ("member", m)), at, self.dropped(name, m))

    def broken(self, operation: str, brk: Break, known: Mapping[str, Maker] | None = None) -> dict[str, Any]:
        """A valid request of `operation` but for `brk`."""
        return self._build(self.input(operation), brk.path, brk, known)

    def _build(self, name: str, path: tuple[Step, ...], brk: Break, known: Mapping[str, Maker] | None) -> Any:
        if not path:
            return brk.make(self.rng)
        (step, arg), rest = path[0], path[1:]
        shape = self.shapes[name]
        if step == "member":
            value = self.valid(name, "", known)
            inner = self._build(shape["members"][arg]["shape"], rest, brk, known)
            if inner is MISSING:
                value.pop(arg, None)
            else:
                value[arg] = inner
            return value
        if step == "index":
            lo = shape.get("min", 0)
            return [self._build(shape["member"]["shape"], rest, brk, known),
                    *(self.valid(shape["member"]["shape"], "", known) for _ in range(max(lo - 1, 0)))]
        if step == "key":
            return {arg: self.valid(shape["value"]["shape"], "", known)}
        return {arg: self._build(shape["value"]["shape"], rest, brk, known)}


def cases(requests: Requests, operations: list[str], valid_each: int, known: Mapping[str, Mapping[str, Maker]]
          ) -> Iterator[tuple[str, dict[str, Any], Break | None]]:
    """(operation, request, what it breaks or None) for every break of every operation, and
    `valid_each` valid requests per operation; `known` per operation."""
    for op in operations:
        for brk in requests.breaks(op):
            yield op, requests.broken(op, brk, known.get(op)), brk
        for _ in itertools.repeat(None, valid_each):
            yield op, requests.request(op, known.get(op)), None
