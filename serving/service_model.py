"""Amazon Personalize's own input rules, read from botocore's service models and checked here.

Personalize refuses a request whose members break its model before any handler sees it, and
so do we, with the same two errors: SerializationException for a value of the wrong JSON type
(`numResults: "5"`), InvalidInputException for a broken constraint (length, count, pattern,
range, enum, a missing required member). The message names the member's path
(`eventList[0].itemId`, `dataSource.dataLocation`, `filterValues[GENRE]`) and never repeats
what was sent: at most a 32-character prefix of a map key, which is part of the path.

The three models are loaded once; each operation's input shape is compiled once into nested
closures (`checker`), so a check walks the request's own members and nothing else: a few
microseconds for a GetRecommendations. Members a model does not know are left alone here:
the routes' pydantic models refuse them.

How the model's rules are read, where botocore leaves it open:
- patterns match the whole value, as Java's `matches()` does: the models' patterns are Java's
  and written for that (as a search, `\\p{ASCII}{0,1500}` would hold for any value), with Java's
  meaning of `\\d` (ASCII digits), `.` (no line terminator) and the `\\p{...}` classes used;
- JSON null for a member means the member is absent (for a list entry or map value it is a
  value of the wrong type); `integer` is 32-bit and `long` 64-bit; floats must be finite;
- lengths count code points, as botocore's own client-side validator does.

Where we accept more on purpose (EXTENSIONS, plus one rule on types):
- `dataSource.dataLocation` (CreateDatasetImportJob, CreateDataDeletionJob) and
  `jobOutput.s3DataDestination.path` (CreateDatasetExportJob) take `file://` URLs and plain
  paths besides `s3://`: local files, confined to OPZ_FILE_ROOTS by the handlers;
- a timestamp (PutEvents' `sentAt`) may also be an ISO 8601 string (or a datetime, for a model
  built in Python), which the route's pydantic model then parses.

Pure: botocore's loader and the standard library only.
"""
from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

SERVICES = ("personalize", "personalize-events", "personalize-runtime")
KEY_SHOWN = 32  # characters of a map key quoted in a path

# (service, structure shape, member) -> the constraints of the member's shape we do not apply
EXTENSIONS: dict[tuple[str, str, str], frozenset[str]] = {
    ("personalize", "DataSource", "dataLocation"): frozenset({"pattern"}),  # file:// and paths too
    ("personalize", "S3DataConfig", "path"): frozenset({"pattern"}),        # file:// and paths too
}

Check = Callable[[Any], None]  # raises Refused, with the path below the value it was given
Shape = dict[str, Any]


class Refused(Exception):
    """A request botocore's model forbids. Not a ValueError on purpose: raised inside a pydantic
    validator it reaches the app's error handlers as itself, not as a pydantic error."""

    def __init__(self, problem: str, *, wrong_type: bool = False) -> None:
        super().__init__(problem)
        self.problem, self.wrong_type = problem, wrong_type
        self.path: list[str] = []  # innermost last once complete: members and [index] / [key]

    @property
    def type_name(self) -> str:
        return "SerializationException" if self.wrong_type else "InvalidInputException"

    @property
    def member(self) -> str:
        return "".join(p if p.startswith("[") or i == 0 else f".{p}" for i, p in enumerate(self.path))

    @property
    def message(self) -> str:
        return f"{self.member or 'the request body'}: {self.problem}"

    def __str__(self) -> str:
        return self.message

    def under(self, part: str) -> Refused:
        """The same refusal, one level up: `part` is the member, `[index]` or `[key]` it was in."""
        self.path.insert(0, part)
        return self


# ---- the models ---------------------------------------------------------------------------------

@functools.cache
def service_model(service: str) -> dict[str, Any]:
    """botocore's service-2 model of `service` (it ships them with the package)."""
    import botocore.loaders
    return botocore.loaders.create_loader().load_service_model(service, "service-2")


def input_shape(service: str, operation: str) -> str:
    return service_model(service)["operations"][operation]["input"]["shape"]


@functools.cache
def checker(service: str, operation: str) -> Check:
    """The check of `operation`'s request, compiled once: call it with the decoded JSON body."""
    return _Compiler(service).shape(input_shape(service, operation))


def check(service: str, operation: str, payload: object) -> None:
    """Raise Refused where `payload` (the request as JSON decoded it) breaks botocore's model."""
    checker(service, operation)(payload)


def before(service: str, operation: str) -> Callable[[Any], Any]:
    """`check` as a pydantic `model_validator(mode="before")`: the request, unchanged, or Refused.
    Compiled now, so the model's first request pays nothing for it. Bytes are a body FastAPI did
    not decode (not sent as JSON): no JSON to check, the model refuses them in its own words."""
    compiled = checker(service, operation)

    def checked(payload: Any) -> Any:
        if not isinstance(payload, bytes):
            compiled(payload)
        return payload

    return checked


# ---- Java's regular expressions as Python's re writes them --------------------------------------

_Z = r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"  # Unicode's Z* (separators)
_IN_CLASS = {"ASCII": r"\x00-\x7f", "Z": _Z, "d": "0-9"}
_LINE_ENDS = r"\n\r\x85\u2028\u2029"


def java_regex(pattern: str) -> re.Pattern[str]:
    """Python's equivalent of a botocore (Java) pattern, for matching whole values (fullmatch).

    `\\p{L}` and `\\p{N}` have no `re` spelling on their own; the models use them only together,
    in a class that also holds `_`, where the three are exactly `\\w`. Anything else unknown
    raises ValueError, so a new model cannot be read wrongly without a test noticing."""
    out: list[str] = []
    i, in_class, class_start = 0, False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and pattern.startswith("\\p{", i):
            name = pattern[i + 3:pattern.index("}", i)]
            i += len(name) + 4
            if name in _IN_CLASS:
                out.append(_IN_CLASS[name] if in_class else f"[{_IN_CLASS[name]}]")
            elif name in ("L", "N") and in_class:
                body = pattern[class_start:pattern.index("]", i)]
                if not ("\\p{L}" in body and "\\p{N}" in body and "_" in body):
                    raise ValueError(f"unsupported pattern {pattern!r}: \\p{{{name}}} needs \\p{{L}}, "
                                     "\\p{N} and _ in its class")
                out.append(r"\w" if name == "L" else "")
            else:
                raise ValueError(f"unsupported pattern {pattern!r}: \\p{{{name}}}")
            continue
        if c == "\\":
            escape = pattern[i:i + 2]
            out.append(_IN_CLASS["d"] if escape == r"\d" and in_class else
                       f"[{_IN_CLASS['d']}]" if escape == r"\d" else escape)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class, class_start = True, i
        elif c == "]" and in_class:
            in_class = False
        elif c == "(" and not in_class and not pattern.startswith("(?", i):
            c = "(?:"  # nothing reads the groups: not capturing them is faster
        out.append(f"[^{_LINE_ENDS}]" if c == "." and not in_class else c)
        i += 1
    return re.compile("".join(out))


# ---- the compiler -------------------------------------------------------------------------------

def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _wrong(expected: str, value: object) -> Refused:
    return Refused(f"must be {expected}, not {_json_type(value)}", wrong_type=True)


def _bounds(shape: Shape) -> tuple[int, float]:
    return shape.get("min", 0), shape.get("max", math.inf)


def _size(shape: Shape, verb: str, unit: str, units: str) -> Callable[[int], str]:
    """The problem with a length or count of n that is out of the shape's bounds."""
    lo, hi = _bounds(shape)

    def problem(n: int) -> str:
        limit = f"at least {lo}" if n < lo else f"at most {hi}"
        return f"{verb} {limit} {unit if (lo if n < lo else hi) == 1 else units}, not {n}"

    return problem


def key_label(key: str) -> str:
    """A map key as a path shows it: printable, at most KEY_SHOWN characters."""
    shown = "".join(c if c.isprintable() else "?" for c in key[:KEY_SHOWN])
    return shown + ("..." if len(key) > KEY_SHOWN else "")


_BITS = {"integer": 31, "long": 63}
_NUMBERS = frozenset({int, float})  # JSON's numbers as decoded: exact types, so never a bool


class _Compiler:
    """One service's shapes -> Check closures, each shape compiled once. An unknown shape type
    raises AttributeError here, at compile time (tests/unit/test_service_model.py compiles every
    implemented operation)."""

    def __init__(self, service: str) -> None:
        self.service, self.shapes = service, service_model(service)["shapes"]
        self.done: dict[tuple[str, frozenset[str]], Check] = {}

    def shape(self, name: str, dropped: frozenset[str] = frozenset()) -> Check:
        key = (name, dropped)
        if key not in self.done:
            later: list[Check] = []
            self.done[key] = lambda value: later[0](value)  # a shape that contains itself
            shape = {k: v for k, v in self.shapes[name].items() if k not in dropped}
            later.append(getattr(self, "_" + shape["type"])(name, shape))
            self.done[key] = later[0]
        return self.done[key]

    def _structure(self, name: str, shape: Shape) -> Check:
        members = {m: self.shape(ref["shape"], EXTENSIONS.get((self.service, name, m), frozenset()))
                   for m, ref in shape["members"].items()}
        required = tuple(shape.get("required", ()))

        def check(value: Any) -> None:
            if not isinstance(value, dict):
                raise _wrong("an object", value)
            for member, item in value.items():
                inner = members.get(member)
                if inner is not None and item is not None:
                    try:
                        inner(item)
                    except Refused as exc:
                        raise exc.under(member) from None
            for member in required:
                if value.get(member) is None:
                    raise Refused("is required").under(member)

        return check

    def _list(self, name: str, shape: Shape) -> Check:
        (lo, hi), size = _bounds(shape), _size(shape, "must have", "entry", "entries")
        inner = self.shape(shape["member"]["shape"])
        strings = self.shapes[shape["member"]["shape"]]
        plain = strings["type"] == "string" and not {"pattern", "enum"} & strings.keys()
        s_lo, s_hi = _bounds(strings)

        def check(value: Any) -> None:
            if not isinstance(value, list):
                raise _wrong("an array", value)
            if not lo <= len(value) <= hi:
                raise Refused(size(len(value)))
            if plain and all(type(s) is str and s_lo <= len(s) <= s_hi for s in value):
                return  # lists of plain strings (inputList, impression): one pass, no call per entry
            for i, item in enumerate(value):
                try:
                    inner(item)
                except Refused as exc:
                    raise exc.under(f"[{i}]") from None

        return check

    def _map(self, name: str, shape: Shape) -> Check:
        (lo, hi), size = _bounds(shape), _size(shape, "must have", "entry", "entries")
        keys, values = self.shape(shape["key"]["shape"]), self.shape(shape["value"]["shape"])

        def check(value: Any) -> None:
            if not isinstance(value, dict):
                raise _wrong("an object", value)
            if not lo <= len(value) <= hi:
                raise Refused(size(len(value)))
            for key, item in value.items():
                try:
                    keys(key)
                except Refused as exc:
                    exc.problem = f"its key {exc.problem}"
                    raise exc.under(f"[{key_label(key)}]") from None
                try:
                    values(item)
                except Refused as exc:
                    raise exc.under(f"[{key_label(key)}]") from None

        return check

    def _string(self, name: str, shape: Shape) -> Check:
        (lo, hi), size = _bounds(shape), _size(shape, "must be", "character long", "characters long")
        enum = frozenset(shape.get("enum", ()))
        match = java_regex(shape["pattern"]).fullmatch if "pattern" in shape else None
        one_of = f"must be one of {', '.join(shape.get('enum', ()))}"
        matches = f"must match the pattern {shape.get('pattern')}"
        stored = self.service == "personalize"  # the control plane's strings go to its database

        def check(value: Any) -> None:
            if not isinstance(value, str):
                raise _wrong("a string", value)
            if not lo <= len(value) <= hi:
                raise Refused(size(len(value)))
            if stored and "\x00" in value:  # PostgreSQL stores no NUL in text or JSON
                raise Refused("must not contain the character U+0000")
            if enum and value not in enum:
                raise Refused(one_of)
            if match is not None and match(value) is None:
                raise Refused(matches)

        return check

    def _integer(self, name: str, shape: Shape) -> Check:
        bits = _BITS[shape["type"]]
        lo, hi = shape.get("min", -(2 ** bits)), shape.get("max", 2 ** bits - 1)
        within = f"must be between {lo} and {hi}"

        def check(value: Any) -> None:
            if type(value) is not int:
                raise _wrong("an integer", value)
            if not lo <= value <= hi:
                raise Refused(within)

        return check

    _long = _integer

    def _double(self, name: str, shape: Shape) -> Check:
        lo, hi = shape.get("min", -math.inf), shape.get("max", math.inf)
        within = f"must be between {lo} and {hi}" if "min" in shape and "max" in shape else \
            f"must be at least {lo}" if "min" in shape else f"must be at most {hi}"

        def check(value: Any) -> None:
            if type(value) not in _NUMBERS:
                raise _wrong("a number", value)
            if not math.isfinite(value):
                raise Refused("must be a finite number", wrong_type=True)
            if not lo <= value <= hi:
                raise Refused(within)

        return check

    _float = _double

    def _boolean(self, name: str, shape: Shape) -> Check:
        def check(value: Any) -> None:
            if not isinstance(value, bool):
                raise _wrong("a boolean", value)

        return check

    def _timestamp(self, name: str, shape: Shape) -> Check:
        def check(value: Any) -> None:
            if type(value) in _NUMBERS:
                if not math.isfinite(value):
                    raise Refused("must be a finite number", wrong_type=True)
                return
            if not isinstance(value, (str, datetime)):  # an ISO 8601 string: the model parses it
                raise _wrong("a number of seconds since the epoch", value)

        return check
