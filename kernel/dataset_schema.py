"""Amazon Personalize's schema rules: what CreateSchema accepts and what CreateDataset requires.

A schema is an Avro record whose flat, scalar fields name the CSV columns of a dataset import
and the camelCase `properties` of streamed events, so a schema Personalize would refuse must
be refused here too, before any data is read against it. Rules follow the Personalize
Developer Guide ("Creating schema JSON files", "Custom datasets and schemas", "Service
quotas"); the field-name length cap is ours, as Amazon documents none.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import fastavro

DatasetType = Literal["INTERACTIONS", "ITEMS", "USERS", "ACTIONS", "ACTION_INTERACTIONS"]
ScalarType = Literal["string", "int", "long", "float", "double", "boolean"]
DATASET_TYPES: tuple[str, ...] = ("INTERACTIONS", "ITEMS", "USERS", "ACTIONS", "ACTION_INTERACTIONS")
ACTION_TYPES: tuple[str, ...] = ("ACTIONS", "ACTION_INTERACTIONS")  # Next-Best-Action's; custom groups only

MAX_SCHEMA_CHARS = 20_000  # CreateSchema API: schema length constraint
MAX_NAME_CHARS = 256  # assumed; not documented
_SCALARS = ("string", "int", "long", "float", "double", "boolean")
_NUMERIC = frozenset({"int", "long", "float", "double"})
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[+-]?\d{1,18}")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_AVRO_FULLNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # fastavro doesn't check

# reserved field -> (allowed types, may be null). Docs say TIMESTAMP long and EVENT_VALUE float;
# int and double are widened on purpose. CREATION_TIMESTAMP may be null: Personalize infers it.
_RESERVED: dict[str, tuple[tuple[str, ...], bool]] = {
    "USER_ID": (("string",), False),
    "ITEM_ID": (("string",), False),
    "TIMESTAMP": (("long", "int"), False),
    "EVENT_TYPE": (("string",), False),
    "EVENT_VALUE": (("float", "double"), True),
    "IMPRESSION": (("string",), True),
    "RECOMMENDATION_ID": (("string",), True),
    "EVENT_ATTRIBUTION_SOURCE": (("string",), True),
    "CREATION_TIMESTAMP": (("long",), True),
}
# Next-Best-Action's reserved fields ("Custom datasets and schemas", "Actions dataset"), reserved
# in its two dataset types only: an ITEMS dataset may have a VALUE of its own. VALUE, an
# expiration and a repeat frequency (days) are whole numbers; int is widened on purpose.
_ACTION_RESERVED: dict[str, tuple[tuple[str, ...], bool]] = {
    "ACTION_ID": (("string",), False),
    "VALUE": (("long", "int"), True),
    "EXPIRATION_TIMESTAMP": (("long", "int"), True),
    "REPEAT_FREQUENCY": (("long", "int"), True),
}
# dataset type -> (required fields, optional reserved fields, max metadata fields)
_DATASETS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "INTERACTIONS": (("USER_ID", "ITEM_ID", "TIMESTAMP"),
                     ("EVENT_TYPE", "EVENT_VALUE", "IMPRESSION", "RECOMMENDATION_ID",
                      "EVENT_ATTRIBUTION_SOURCE"), 5),
    "ITEMS": (("ITEM_ID",), ("CREATION_TIMESTAMP",), 100),
    "USERS": (("USER_ID",), (), 25),
    # Actions: at most 10 columns in all (MAX_COLUMNS); action interactions' metadata cap is
    # assumed to be the item interactions' (not documented)
    "ACTIONS": (("ACTION_ID",), ("CREATION_TIMESTAMP", "VALUE", "EXPIRATION_TIMESTAMP", "REPEAT_FREQUENCY"),
                9),
    "ACTION_INTERACTIONS": (("USER_ID", "ACTION_ID", "TIMESTAMP", "EVENT_TYPE"),
                            ("IMPRESSION", "RECOMMENDATION_ID"), 5),
}
MAX_COLUMNS = {"ACTIONS": 10}  # Personalize: "The maximum number of columns is 10"
# the fields a PutItems/PutUsers/PutActions record or a PutActionInteractions event gives as
# members of its own, not in its `properties`
_OWN: dict[str, tuple[str, ...]] = {
    "ITEMS": ("ITEM_ID",), "USERS": ("USER_ID",), "ACTIONS": ("ACTION_ID",),
    "ACTION_INTERACTIONS": ("USER_ID", "ACTION_ID", "TIMESTAMP", "EVENT_TYPE", "IMPRESSION",
                            "RECOMMENDATION_ID")}


def _key(name: str) -> str:
    # Personalize compares names alphanumerically: GENRES_FIELD_1 clashes with GENRESFIELD1
    return name.replace("_", "").lower()


# Other spellings of these become event property keys (userId, timestamp, ...) that PutEvents
# forbids case-insensitively; sessionId has no schema field of its own.
_KEYWORDS: dict[str, str | None] = {_key(n): n for n in _RESERVED} | {"sessionid": None}


class SchemaError(ValueError):
    """A schema Personalize would refuse; `field` names the offending field, if one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f'field "{field}": {message}' if field is not None else message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ScalarType
    nullable: bool
    categorical: bool = False
    textual: bool = False


@dataclass(frozen=True, slots=True)
class Schema:
    name: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def metadata_columns(self, dataset_type: str) -> tuple[Column, ...]:
        required, optional, _ = _dataset(dataset_type)
        return tuple(c for c in self.columns if c.name not in required + optional)


def _dataset(dataset_type: str) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    if dataset_type not in _DATASETS:
        raise SchemaError(f"unknown dataset type {dataset_type!r}; use one of {', '.join(DATASET_TYPES)}")
    return _DATASETS[dataset_type]


def _reserved(dataset_type: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    """The reserved fields as a dataset of this type sees them: Next-Best-Action's own in its two."""
    return _RESERVED | _ACTION_RESERVED if dataset_type in ACTION_TYPES else _RESERVED


def _scalar(avro_type: Any) -> tuple[str, bool] | None:
    """(type, nullable) for a supported field type, else None. A union of one scalar is that
    scalar (Personalize accepts `["string"]`, as AWS's samples write it); of a scalar and null,
    that scalar or null."""
    if isinstance(avro_type, str):
        return (avro_type, False) if avro_type in _SCALARS else None
    if isinstance(avro_type, list) and len(avro_type) == 1:
        return _scalar(avro_type[0]) if isinstance(avro_type[0], str) else None
    if isinstance(avro_type, list) and len(avro_type) == 2 and "null" in avro_type:
        other = avro_type[1] if avro_type[0] == "null" else avro_type[0]
        if isinstance(other, str) and other in _SCALARS:
            return other, True
    return None


def _flag(field: dict[str, Any], name: str, flag: str) -> bool:
    value = field.get(flag, False)
    if not isinstance(value, bool):
        raise SchemaError(f"{flag} must be true or false, not {json.dumps(value)}", name)
    return value


def _column(field: Any, seen: dict[str, str]) -> Column:
    if not isinstance(field, dict) or not isinstance(field.get("name"), str):
        raise SchemaError(f'every field needs a "name" and a "type"; got {json.dumps(field)[:100]}')
    name = field["name"]
    if not _AVRO_NAME.fullmatch(name):
        raise SchemaError("a name must start with a letter or _ and hold only letters, digits and _", name)
    if len(name) > MAX_NAME_CHARS:
        raise SchemaError(f"names are at most {MAX_NAME_CHARS} characters", name)
    key = _key(name)
    if key in seen:
        raise SchemaError(f'clashes with field "{seen[key]}"; names must differ in more than '
                          "case and underscores", name)
    seen[key] = name
    if key in _KEYWORDS and name not in _RESERVED:
        hint = f"; name it {_KEYWORDS[key]}" if _KEYWORDS[key] else ""
        raise SchemaError(f"{name} is a reserved keyword in Personalize{hint}", name)
    parsed = _scalar(field.get("type"))
    if parsed is None:
        raise SchemaError(f"type {json.dumps(field.get('type'))} is not supported; use one of "
                          f'{", ".join(_SCALARS)} or a union of one of them with "null"', name)
    avro_type, nullable = parsed
    categorical, textual = _flag(field, name, "categorical"), _flag(field, name, "textual")
    for flag, on in (("categorical", categorical), ("textual", textual)):
        if on and avro_type != "string":
            raise SchemaError(f"{flag} is only allowed on string fields, not {avro_type}", name)
    if categorical and textual:
        raise SchemaError("a field can't be both categorical and textual", name)
    return Column(name, avro_type, nullable, categorical, textual)  # type: ignore[arg-type]


def parse_schema(text: str) -> Schema:
    """What CreateSchema checks: JSON, Avro validity, supported types and flags."""
    if len(text) > MAX_SCHEMA_CHARS:
        raise SchemaError(f"schema is {len(text)} characters; Personalize allows at most {MAX_SCHEMA_CHARS}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SchemaError(f"schema is not valid JSON: {e}") from None
    except RecursionError:  # 10,000 characters nest 5,000 deep; the parser gives up near 1,000
        raise SchemaError("schema nests too deep: a Personalize schema is a flat record") from None
    if not isinstance(doc, dict) or doc.get("type") != "record":
        raise SchemaError('schema must be an Avro record: {"type": "record", "name": ..., "fields": [...]}')
    if not isinstance(doc.get("name"), str) or not _AVRO_FULLNAME.fullmatch(doc["name"]):
        raise SchemaError('schema needs a "name" that is an Avro name, e.g. "Interactions"')
    if doc.get("namespace") not in (None, "") and not _AVRO_FULLNAME.fullmatch(str(doc["namespace"])):
        raise SchemaError(f"namespace {json.dumps(doc['namespace'])} is not a dotted Avro name")
    fields = doc.get("fields")
    if not isinstance(fields, list) or not fields:
        raise SchemaError('schema needs a non-empty "fields" list')
    seen: dict[str, str] = {}
    columns = tuple(_column(f, seen) for f in fields)
    textual = [c.name for c in columns if c.textual]
    if len(textual) > 1:
        raise SchemaError(f"only one textual field is allowed; {textual[0]} is already textual", textual[1])
    try:
        fastavro.parse_schema(doc)
    except Exception as e:  # fastavro raises several unrelated types for a bad schema
        raise SchemaError(f"schema is not valid Avro: {e}") from None
    return Schema(doc["name"], columns)


def check_dataset_type(schema: Schema, dataset_type: str) -> None:
    """What CreateDataset checks: required/reserved fields and metadata limits for that type."""
    required, optional, max_metadata = _dataset(dataset_type)
    reserved = _reserved(dataset_type)
    for name in required:
        if schema.column(name) is None:
            types, _ = reserved[name]
            raise SchemaError(f"{dataset_type} datasets need a {name} field of type {types[0]}", name)
    for col in schema.columns:
        if col.textual and dataset_type != "ITEMS":
            raise SchemaError(f"textual fields are only allowed in ITEMS datasets, not {dataset_type}",
                              col.name)
        if col.name not in reserved:
            continue
        if col.name not in required + optional:
            owners = [t for t, (r, o, _) in _DATASETS.items() if col.name in r + o]
            raise SchemaError(f"reserved for {' and '.join(owners)} datasets; it can't be used in "
                              f"{dataset_type}", col.name)
        types, may_be_null = reserved[col.name]
        if col.type not in types:
            raise SchemaError(f"must be of type {' or '.join(types)}, not {col.type}", col.name)
        if col.nullable and not may_be_null:
            raise SchemaError(f'can\'t be null; use "{col.type}", not a union with "null"', col.name)
        if col.categorical or col.textual:
            raise SchemaError("reserved fields can't be categorical or textual", col.name)
    metadata = schema.metadata_columns(dataset_type)
    if len(metadata) > max_metadata:
        raise SchemaError(f"{dataset_type} datasets allow at most {max_metadata} metadata fields "
                          f"(non-reserved); this schema has {len(metadata)}", metadata[max_metadata].name)
    if dataset_type in MAX_COLUMNS and len(schema.columns) > MAX_COLUMNS[dataset_type]:
        raise SchemaError(f"{dataset_type} datasets have at most {MAX_COLUMNS[dataset_type]} fields; this "
                          f"schema has {len(schema.columns)}", schema.columns[MAX_COLUMNS[dataset_type]].name)
    if dataset_type == "ACTIONS":  # "at least one metadata field": its reserved numbers count too
        metadata = tuple(c for c in schema.columns if c.name != "ACTION_ID")
    if dataset_type in ("ITEMS", "USERS", "ACTIONS") and not any(
            c.type in _NUMERIC or c.categorical or c.textual for c in metadata):
        raise SchemaError(f"{dataset_type} datasets need at least one metadata field Personalize "
                          "can train on: a number, or a categorical" +
                          (" or textual" if dataset_type == "ITEMS" else "") + " string")


# domain -> dataset type -> field -> (types, categorical, textual, required): Personalize's
# domain schemas ("VIDEO_ON_DEMAND datasets and schemas", "ECOMMERCE datasets and schemas"):
# the required fields must be there, the reserved ones, where present, of their type.
_Field = tuple[tuple[str, ...], bool, bool, bool]
_STR, _NUM, _LONG = ("string",), ("float", "double"), ("long", "int")
_DOMAIN_INTERACTIONS: dict[str, _Field] = {"EVENT_TYPE": (_STR, False, False, True)}
_DOMAINS: dict[str, dict[str, dict[str, _Field]]] = {
    "VIDEO_ON_DEMAND": {
        "INTERACTIONS": _DOMAIN_INTERACTIONS,
        "ITEMS": {"GENRES": (_STR, True, False, True), "CREATION_TIMESTAMP": (_LONG, False, False, True),
                  "PRICE": (_NUM, False, False, False), "DURATION": (_NUM, False, False, False),
                  "GENRE_L2": (_STR, True, False, False), "GENRE_L3": (_STR, True, False, False),
                  "AVERAGE_RATING": (_NUM, False, False, False),
                  "PRODUCT_DESCRIPTION": (_STR, False, True, False),
                  "CONTENT_OWNER": (_STR, True, False, False),
                  "CONTENT_CLASSIFICATION": (_STR, True, False, False)},
        "USERS": {"SUBSCRIPTION_MODEL": (_STR, True, False, False)}},
    "ECOMMERCE": {
        "INTERACTIONS": _DOMAIN_INTERACTIONS,
        "ITEMS": {"PRICE": (_NUM, False, False, True), "CATEGORY_L1": (_STR, True, False, True),
                  "CATEGORY_L2": (_STR, True, False, False), "CATEGORY_L3": (_STR, True, False, False),
                  "PRODUCT_DESCRIPTION": (_STR, False, True, False),
                  "CREATION_TIMESTAMP": (_LONG, False, False, False),
                  "AGE_GROUP": (_STR, True, False, False), "ADULT": (_STR, True, False, False),
                  "GENDER": (_STR, True, False, False)},
        "USERS": {}},
}


def check_domain(schema: Schema, dataset_type: str, domain: str) -> None:
    """What CreateDataset checks in a domain dataset group, beyond check_dataset_type: the
    domain's required fields (EVENT_TYPE; GENRES and CREATION_TIMESTAMP of videos; PRICE and
    CATEGORY_L1 of products) and its reserved ones' types and flags."""
    for name, (types, categorical, textual, required) in _DOMAINS[domain][dataset_type].items():
        col = schema.column(name)
        if col is None:
            if required:
                kind = " categorical" if categorical else " textual" if textual else ""
                raise SchemaError(f"{domain} {dataset_type} datasets need a{kind} {name} field of type "
                                  f"{types[0]}", name)
            continue
        if col.type not in types:
            raise SchemaError(f"in the {domain} domain it must be of type {' or '.join(types)}, "
                              f"not {col.type}", name)
        if col.categorical != categorical or col.textual != textual:
            flag = "categorical" if categorical else "textual" if textual else "neither categorical nor " \
                "textual"
            raise SchemaError(f"in the {domain} domain it must be {flag}", name)


def infer_schema(dataset_type: str, header: list[str], sample: list[list[str]]) -> str:
    """A schema for a CSV a user has not written one for (`personalize import`): reserved
    fields get their documented types; other columns become int/long/float when every
    sampled value is a number, else strings, categorical when pipe-separated or repetitive.
    Whatever may be null is (a sample can miss the row with the empty cell). Header names
    are read as an import reads them: reserved ones in any case, an empty one (pandas' index
    column) not at all."""
    fields: list[dict[str, Any]] = []
    known = _reserved(dataset_type)
    reserved = {n.lower(): n for n in known}
    for i, column in enumerate(header):
        if not column.strip():
            continue
        name = reserved.get(column.lower(), column)
        values = [row[i] for row in sample if i < len(row) and row[i] != ""]
        nullable = True
        if name in known:
            types, nullable = known[name]
            type_ = types[0]
        elif values and all(_INT.fullmatch(v) for v in values):
            type_ = "int" if all(abs(int(v)) < 2**31 for v in values) else "long"
        elif values and all(_FLOAT.fullmatch(v) for v in values):
            type_ = "float"
        else:
            type_ = "string"
        field: dict[str, Any] = {"name": name, "type": ["null", type_] if nullable else type_}
        if type_ == "string" and name not in known and values and (
                any("|" in v for v in values) or len(set(values)) <= max(20, len(values) // 2)):
            field["categorical"] = True
        fields.append(field)
    text = json.dumps({"type": "record", "name": dataset_type.capitalize(),
                       "namespace": "com.amazonaws.personalize.schema", "fields": fields, "version": "1.0"})
    check_dataset_type(parse_schema(text), dataset_type)
    return text


def record_fields(schema: Schema, dataset_type: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The `properties` of a PutItems/PutUsers/PutActions record, or of a PutActionInteractions
    event, as schema field -> value.

    Keys are the fields' camelCase names (GENRES -> genres, NUMBER_OF_RATINGS ->
    numberOfRatings, matched ignoring case and underscores, as Personalize does); values must
    have the field's type. The fields the record's own members give (its id; an action
    interaction's user, action, time, type, ...) are not properties. Raises SchemaError naming
    the property."""
    own = _OWN[dataset_type]
    by_key = {_key(c.name): c for c in schema.columns if c.name not in own}
    out: dict[str, Any] = {}
    for name, value in properties.items():
        col = by_key.get(_key(name))
        if col is None:
            mine = next((f for f in own if _key(f) == _key(name)), None)
            hint = "" if mine is None else f"; the {mine} is the record's own id" if len(own) == 1 else \
                f"; the {mine} is a member of the action interaction itself"
            raise SchemaError(f"is not a field of the {dataset_type} dataset's schema{hint}", name)
        if value is None:
            if not col.nullable:
                raise SchemaError(f"can't be null ({col.name} is required)", name)
        elif not _fits(value, col.type):
            article = "an" if col.type == "int" else "a"
            raise SchemaError(f"{json.dumps(value)[:50]} is not {article} {col.type}", name)
        out[col.name] = float(value) if col.type in ("float", "double") and value is not None else value
    missing = [c.name for c in by_key.values() if not c.nullable and c.name not in out]
    if missing:
        raise SchemaError(f"the schema requires {', '.join(missing)}", missing[0])
    return out


def _fits(value: Any, type_: str) -> bool:
    if isinstance(value, bool):
        return type_ == "boolean"
    if type_ == "string":
        return isinstance(value, str)
    if type_ in ("int", "long"):
        bound = 2**31 if type_ == "int" else 2**63
        return isinstance(value, int) and -bound <= value < bound
    if type_ in ("float", "double"):
        return isinstance(value, int | float)
    return False
