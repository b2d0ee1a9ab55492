"""The contracts the three parts share: what sits in Kafka, dataset rows, the model artifact.

Imports only pydantic and the standard library, so `from kernel.contract import Event`
pulls in nothing heavy (no faust, torch or fastapi).

Kafka topics (one set per dataset group, <datasetGroupName> = dataset_group_name(its ARN):
the name, prefixed with `<account>.` outside the default account):

    opz.<datasetGroupName>.events   key = partition_key(event) (userId, else sessionId),
                                    value = Event as JSON (schemas/event.v1.json)
    opz.<datasetGroupName>.items    compacted; key = itemId, value = DatasetRecord as JSON
    opz.<datasetGroupName>.users    compacted; key = userId, value = DatasetRecord as JSON
                                    (schemas/record.v1.json): the newest record per id
    opz.<datasetGroupName>.actions  compacted; key = actionId (PutActions), likewise
    opz.<datasetGroupName>.action_interactions
                                    key = the event's USER_ID, value = DatasetRecord as JSON
                                    (PutActionInteractions: appended, never compacted)

Redis session-state layout (RedisSessionStore, SESSION_LAYOUT_VERSION = 1; every key family,
its type, TTL, writer and readers: docs/architecture.md, "Redis keys"):

    <prefix>:session:<datasetGroupName>:<userKey>   a hash with fields
        v      layout version ("1"); readers refuse any other value
        state  SessionState as JSON (stream/session.py)

Readers reject versions they do not know with a clear error (UnknownVersion).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EVENT_VERSION = 1
RECORD_VERSION = 1
SESSION_LAYOUT_VERSION = 1
# 2: users' interactions by event type (role user_events); 3: HRNN's vocabulary is only the
# artifact's item_ids (no hrnn_item_ids.npy: a reader of version 2 refuses it rather than fail
# on the file). 1 and 2 readable
MANIFEST_VERSION = 3
TOPIC_PREFIX = "opz."
DEFAULT_ACCOUNT = "000000000000"  # a server without access keys serves everyone as this account
MAX_IMPRESSIONS = 25  # PutEvents' impression list; also what a recommendationId stands for
MAX_EPOCH_SECONDS = 10**11  # larger values are milliseconds (year 5138+), a common mistake
EVENTS_PER_TYPE = 100  # newest interactions per user and event type that filters consider (Personalize's)


class InvalidEvent(ValueError):
    """An event or dataset row that breaks the contract; the message names the field."""


class UnknownVersion(ValueError):
    """A stored record written by a version of this contract we do not know."""


def sent_at_problem(seconds: float) -> str | None:
    """Why `seconds` is not an event time the consumers and training can use, or None. The archive
    files each event under its UTC day, and far enough out no calendar holds one; from
    MAX_EPOCH_SECONDS (year 5138) on it is almost surely milliseconds, before 1970 a clock or a
    unit gone wrong."""
    if not math.isfinite(seconds):
        return "must be a finite number"
    if seconds < 0:
        return "must be Unix epoch seconds, not before 1970"
    if seconds >= MAX_EPOCH_SECONDS:
        return f"must be Unix epoch seconds, less than {MAX_EPOCH_SECONDS} (milliseconds?)"
    return None


def events_topic(dataset_group_name: str) -> str:
    """Kafka topic holding a dataset group's events (names are [a-zA-Z0-9_-], valid in Kafka)."""
    return f"{TOPIC_PREFIX}{dataset_group_name}.events"


def events_topic_group(topic: str) -> str:
    """The dataset group name of an events topic (the inverse of `events_topic`)."""
    return topic.removeprefix(TOPIC_PREFIX).removesuffix(".events")


def events_topic_pattern(dataset_groups: str = ".+") -> str:
    """Regex of the events topics of the dataset groups whose names match `dataset_groups`."""
    return rf"^{re.escape(TOPIC_PREFIX)}(?:{dataset_groups})\.events$"


RECORD_TYPES = ("ITEMS", "USERS", "ACTIONS", "ACTION_INTERACTIONS")  # what the records topics carry
UPSERTED = ("ITEMS", "USERS", "ACTIONS")  # records of one id replace each other: compacted topics


def records_topic(dataset_group_name: str, dataset_type: str) -> str:
    """Topic of a dataset group's PutItems (ITEMS), PutUsers (USERS), PutActions (ACTIONS) or
    PutActionInteractions (ACTION_INTERACTIONS) records."""
    return f"{TOPIC_PREFIX}{dataset_group_name}.{dataset_type.lower()}"


def records_topic_pattern(dataset_groups: str = ".+") -> str:
    kinds = "|".join(t.lower() for t in RECORD_TYPES)
    return rf"^{re.escape(TOPIC_PREFIX)}(?:{dataset_groups})\.(?:{kinds})$"


def compacted(topic: str) -> bool:
    """Whether a topic keeps only the newest record per key: the upserted records' topics."""
    return topic.endswith(tuple(f".{t.lower()}" for t in UPSERTED))


def dataset_group_name(arn: str) -> str:
    """`arn:aws:personalize:<region>:<account>:dataset-group/<name>` -> the name its data goes
    by (topics, session keys, archive, datasets, artifacts): `<name>` in the open server's
    default account, `<account>.<name>` in any other, so that two accounts' dataset groups of
    one name never meet (a name has no '.')."""
    m = re.fullmatch(r"arn:[a-z\d-]+:personalize:[^:]*:([^:]*):dataset-group/(.+)", arn)
    if not m:
        raise InvalidEvent(f"not a dataset group ARN: {arn!r}")
    account, name = m.groups()
    return name if account in (DEFAULT_ACCOUNT, "") else f"{account}.{name}"


class Event(BaseModel):
    """One interaction as it sits in Kafka and in the embedded log (schemas/event.v1.json).

    Times are Unix seconds (UTC), as Personalize's TIMESTAMP column.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = Field(1, description="contract version (EVENT_VERSION)")
    event_id: str = Field(description="client eventId, else server-assigned; dedupe key")
    dataset_group: str = Field(description="dataset group name the tracker belongs to")
    tracking_id: str = Field(description="event tracker that accepted it")
    user_id: str | None = Field(None, description="None for anonymous sessions")
    session_id: str = Field(description="client session id")
    event_type: str = Field(description="EVENT_TYPE, e.g. click, watch, purchase")
    event_value: float | None = Field(None, description="EVENT_VALUE")
    item_id: str | None = Field(None, description="ITEM_ID the user interacted with")
    properties: dict[str, object] | None = Field(None, description="parsed `properties` JSON")
    sent_at: float = Field(description="client time of the event, Unix seconds")
    received_at: float = Field(description="server time when accepted, Unix seconds")
    recommendation_id: str | None = Field(None, description="list the item was picked from")
    impression: list[str] = Field(default_factory=list, description="items shown")
    attribution_source: str | None = Field(None, description="metricAttribution source")

    @property
    def user_key(self) -> str:
        return partition_key(self)


def partition_key(event: Event) -> str:
    """Kafka key: one user's events stay ordered in one partition; anonymous ones by session."""
    return event.user_id if event.user_id is not None else anonymous_key(event.session_id)


def anonymous_key(session_id: str) -> str:
    """Where an anonymous session's state lives (and its Kafka key)."""
    return f"session:{session_id}"


class DatasetRecord(BaseModel):
    """A record of PutItems, PutUsers or PutActions: one item's, user's or action's fields,
    upserted by id; or one PutActionInteractions event, appended (its record_id is the event's
    id: an event stored twice is read once)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = Field(1, description="contract version (RECORD_VERSION)")
    record_id: str = Field(description="server-assigned id of this write; an action interaction's eventId")
    dataset_group: str = Field(description="dataset group name")
    dataset_type: Literal["ITEMS", "USERS", "ACTIONS", "ACTION_INTERACTIONS"]
    id: str = Field(description="ITEM_ID, USER_ID or ACTION_ID (an action interaction's USER_ID); "
                              "the Kafka key")
    fields: dict[str, str | int | float | bool | None] = Field(
        description="schema field name -> value in the field's type (categorical: pipe-separated)")
    received_at: float = Field(description="server time when accepted, Unix seconds")


# ---- dataset rows (Personalize's CSV schema; extra metadata columns are allowed) ----

class InteractionRow(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    USER_ID: str
    ITEM_ID: str
    TIMESTAMP: int
    EVENT_TYPE: str | None = None
    EVENT_VALUE: float | None = None


class ItemRow(BaseModel):
    model_config = ConfigDict(extra="allow")

    ITEM_ID: str


class UserRow(BaseModel):
    model_config = ConfigDict(extra="allow")

    USER_ID: str


# ---- model artifact (training writes it, stream workers and serving load it) ----

class ArtifactManifest(BaseModel):
    """`manifest.json` of an artifact directory; nothing in the directory is pickled.

    Version 2 adds the `user_events` file: each user's newest EVENTS_PER_TYPE interactions of
    every event type as of training, which Interactions filters read. A version 1 artifact has
    none, so its filters see only the event types streamed since it was trained. Version 3
    keeps the item vocabulary once (kernel/artifact_files.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1, 2, 3] = MANIFEST_VERSION
    solution_version_arn: str
    recipe: str
    created_at: float
    hidden_dimension: int | None = None
    data_cut: int | None = Field(None, description="newest interaction time trained on (UPDATE's start)")
    files: dict[str, str] = Field(default_factory=dict, description="role -> file name")
    metrics: dict[str, float] = Field(default_factory=dict)
    # file name -> SHA-256 (hex) of every other file of the directory, recorded as the artifact
    # is published (kernel/artifact_store.py): what a reader checks each download against
    checksums: dict[str, str] = Field(default_factory=dict)



def encode_event(event: Event) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


def topic_of(record: Event | DatasetRecord) -> str:
    if isinstance(record, Event):
        return events_topic(record.dataset_group)
    return records_topic(record.dataset_group, record.dataset_type)


def key_of(record: Event | DatasetRecord) -> str:
    return partition_key(record) if isinstance(record, Event) else record.id


def encode(record: Event | DatasetRecord) -> bytes:
    return record.model_dump_json(exclude_none=isinstance(record, Event)).encode()


def decode(topic: str, raw: bytes | str) -> Event | DatasetRecord:
    """A stored record of either kind, by the topic it came from."""
    if topic.endswith(".events"):
        return decode_event(raw)
    try:
        return DatasetRecord.model_validate_json(raw)
    except ValidationError as exc:
        raise _refusal(raw, exc, "dataset record", RECORD_VERSION) from exc


def decode_event(raw: bytes | str) -> Event:
    """Parse a stored event; a version this code does not know is refused, never guessed."""
    try:
        return Event.model_validate_json(raw)
    except ValidationError as exc:
        raise _refusal(raw, exc, "event record", EVENT_VERSION) from exc


def _refusal(raw: bytes | str, exc: ValidationError, what: str, known: int) -> ValueError:
    """UnknownVersion for a record of another contract version, else InvalidEvent."""
    try:
        version = json.loads(raw).get("v")
    except (ValueError, AttributeError):
        version = None
    if version != known:
        return UnknownVersion(f"{what} version {version!r}, expected {known}")
    return InvalidEvent(str(exc))


# ---- dead letters: records a consumer could not handle, kept with why ----

DEAD_LETTER_VERSION = 1
MAX_DEAD_LETTER_ERROR = 2000


def dead_letter_topic(dataset_group_name: str) -> str:
    """Where a dataset group's dead letters go in Kafka (one partition: they are rare)."""
    return f"{TOPIC_PREFIX}{dataset_group_name}.dead-letter"


@dataclass(frozen=True)
class Undecodable:
    """A stored record that this version cannot read (garbage, another contract version):
    handed to the consumer in its place, so it becomes a dead letter instead of a crash."""

    topic: str
    raw: bytes
    error: str

    @property
    def dataset_group(self) -> str:
        return self.topic.removeprefix(TOPIC_PREFIX).rpartition(".")[0]


def decode_or_undecodable(topic: str, raw: bytes | str) -> Event | DatasetRecord | Undecodable:
    try:
        return decode(topic, raw)
    except ValueError as exc:  # InvalidEvent, UnknownVersion
        return Undecodable(topic, raw if isinstance(raw, bytes) else raw.encode(), str(exc))


class DeadLetter(BaseModel):
    """A record a consumer could not handle, as it is kept and listed
    (`personalize stream dead-letters`): the record as it was stored, and why it failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = Field(1, description="contract version (DEAD_LETTER_VERSION)")
    consumer: str = Field(description="what failed on it: sessions, archive, datasets, tail")
    dataset_group: str
    event_id: str | None = Field(None, description="the event's id, or the record's item/user id")
    error: str = Field(description="why the consumer could not handle it (bounded)")
    record: str = Field(description="the record as stored (invalid UTF-8 escaped)")
    failed_at: float = Field(description="server time of the failure, Unix seconds")


def dead_letter(consumer: str, record: Event | DatasetRecord | Undecodable, error: BaseException | str,
                at: float) -> DeadLetter:
    if isinstance(record, Undecodable):
        group, ident, raw = record.dataset_group, None, record.raw
    else:
        group, raw = record.dataset_group, encode(record)
        ident = record.event_id if isinstance(record, Event) else record.id
    why = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return DeadLetter(consumer=consumer, dataset_group=group, event_id=ident,
                      error=why[:MAX_DEAD_LETTER_ERROR], record=raw.decode("utf-8", "backslashreplace"),
                      failed_at=at)
