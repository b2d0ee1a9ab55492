"""The embedded server's interactions archive: every accepted event once, per dataset group.

One SQLite file per dataset group under `<data dir>/archive/`, keyed by event id, so a
redelivered event is ignored, as Personalize ignores "any subsequent events after the
first with the same event ID" in training. Rows carry their UTC day for day-range reads.
Distributed mode's archive is Parquet parts (kernel.archive_parts), which still read a file
of this kind that a stream worker of an earlier release left in the data dir.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from kernel.contract import Event, decode_event, encode_event, sent_at_problem
from kernel.scrub import scrubbed

ARCHIVE_GROUP = "opz-archive"
Row = tuple[str, str, str | None, str | None, str, float, bytes]
log = logging.getLogger(__name__)
SESSION_OF = "json_extract(CAST(record AS TEXT), '$.session_id')"  # an archive row's sessionId


class Unarchivable(ValueError):
    """An event the archive has no row for; the message says why. The archive leaves it out and
    goes on: one such record must not stop every later event from reaching training."""

    def __init__(self, event: Event, problem: str) -> None:
        super().__init__(problem)
        self.event = event


class Archived(NamedTuple):
    new: int  # events stored that were not there before (the others were redeliveries)
    refused: tuple[Unarchivable, ...] = ()  # events left out, each with its event and why


def archive_day(event: Event) -> str:
    """The event's UTC day, which keys its row; Unarchivable where it has none: a sentAt out of
    the contract's bounds (kernel.contract.sent_at_problem) or one no calendar day holds. The API
    refuses those; this is the archive's own guard, for a record that reached the log another way."""
    if problem := sent_at_problem(event.sent_at):
        raise Unarchivable(event, f"sentAt {event.sent_at!r} {problem}")
    try:
        return time.strftime("%Y-%m-%d", time.gmtime(event.sent_at))
    except (OverflowError, OSError, ValueError) as exc:
        raise Unarchivable(event, f"sentAt {event.sent_at!r} has no calendar day ({exc})") from None


def archive_row(event: Event) -> Row:
    """An event as its row (Unarchivable where it has none: `archive_day`)."""
    return (event.event_id, archive_day(event), event.user_id, event.item_id, event.event_type,
            event.sent_at, encode_event(event))


class Archive:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive")
        self._dbs: dict[str, sqlite3.Connection] = {}

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        await self._run(self.root.mkdir, 0o755, True, True)

    async def close(self) -> None:
        await self._run(self._close_all)
        self._pool.shutdown(wait=True)

    def _close_all(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()

    def _db(self, dataset_group: str) -> sqlite3.Connection:
        if dataset_group not in self._dbs:
            db = sqlite3.connect(self.root / f"{dataset_group}.db", check_same_thread=False,
                                 isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                       " event_id TEXT NOT NULL UNIQUE, day TEXT NOT NULL, user_id TEXT,"
                       " item_id TEXT, event_type TEXT NOT NULL, sent_at REAL NOT NULL,"
                       " record BLOB NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS by_day ON events (day)")
            self._dbs[dataset_group] = db
        return self._dbs[dataset_group]

    async def add(self, events: Sequence[Event]) -> Archived:
        """Store events not seen before (by event id): how many were new, and the events it has
        no row for (`archive_row`), each logged and left out so the rest are stored."""
        by_group: dict[str, list[Event]] = defaultdict(list)
        for e in events:
            by_group[e.dataset_group].append(e)
        done = [await self._run(self._add, g, evs) for g, evs in by_group.items()]
        return Archived(sum(d.new for d in done), tuple(x for d in done for x in d.refused))

    def _add(self, dataset_group: str, events: list[Event]) -> Archived:
        rows, refused = [], []
        for e in events:
            try:
                rows.append(archive_row(e))
            except Unarchivable as exc:
                log.error("archive: skipped event %s of %s: %s", e.event_id, dataset_group, exc)
                refused.append(exc)
        if not rows:
            return Archived(0, tuple(refused))
        db = self._db(dataset_group)
        with db:
            db.execute("BEGIN IMMEDIATE")
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO events (event_id, day, user_id, item_id,"
                           " event_type, sent_at, record) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            return Archived(db.total_changes - before, tuple(refused))

    async def read(self, dataset_group: str, *, since_day: str | None = None) -> list[Event]:
        """A dataset group's events in arrival order (optionally from a UTC day, YYYY-MM-DD)."""
        return await self._run(self._read, dataset_group, since_day)

    def _read(self, dataset_group: str, since_day: str | None) -> list[Event]:
        if not (self.root / f"{dataset_group}.db").exists():
            return []
        return _select(self._db(dataset_group), since_day)


def read_events(root: Path, dataset_group: str, *, since_day: str | None = None) -> list[Event]:
    """The same as `Archive.read`, for a synchronous reader in another process (training)."""
    path = root / f"{dataset_group}.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return _select(db, since_day)
    except sqlite3.OperationalError as exc:
        # the archive agent has just created the file and not yet its table (its first
        # events are being written): nothing is archived yet
        if "no such table" in str(exc):
            return []
        raise
    finally:
        db.close()


def _select(db: sqlite3.Connection, since_day: str | None) -> list[Event]:
    q = "SELECT record FROM events" + (" WHERE day >= ?" if since_day else "") + " ORDER BY seq"
    return [decode_event(r[0]) for r in db.execute(q, (since_day,) if since_day else ()).fetchall()]


class ArchiveFiles:
    """The SQLite archive as training, exports and erasure see it, from any process on its host."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, dataset_group: str) -> list[Event]:
        return read_events(self.root, dataset_group)

    def erase(self, dataset_group: str, users: Collection[str] | None = None) -> Erased:
        return erase_events(self.root, dataset_group, users)

    def drop(self, dataset_group: str) -> None:
        erase_events(self.root, dataset_group)


class Erased(NamedTuple):
    users: set[str]  # of the users asked for, those that had events here
    sessions: set[str]  # the sessions their events came in


def erase_events(root: Path, dataset_group: str, users: Collection[str] | None = None) -> Erased:
    """Delete a dataset group's archived events, bytes and all: every one, or those of `users`.

    A user's are their own events and the anonymous ones of the sessions they used (training
    counts those as theirs, stitching them as Personalize does), and, for a user id that is a
    sessionId (a visitor who never signed in is known by it), that session's anonymous events.
    """
    path = root / f"{dataset_group}.db"
    if not path.exists():
        return Erased(set(), set())
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        with scrubbed(db), db:
            db.execute("BEGIN IMMEDIATE")
            if users is None:
                db.execute("DELETE FROM events")
                return Erased(set(), set())
            return _erase_users(db, set(users))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # created by the archive agent a moment ago: empty
            return Erased(set(), set())
        raise
    finally:
        db.close()


def _erase_users(db: sqlite3.Connection, users: set[str]) -> Erased:
    db.execute("CREATE TEMP TABLE IF NOT EXISTS erased_users (id TEXT PRIMARY KEY)")
    db.execute("CREATE TEMP TABLE IF NOT EXISTS erased_sessions (id TEXT PRIMARY KEY)")
    db.executemany("INSERT OR IGNORE INTO temp.erased_users VALUES (?)", ((u,) for u in users))
    db.execute(f"INSERT OR IGNORE INTO temp.erased_sessions SELECT DISTINCT {SESSION_OF} FROM events"
               " WHERE user_id IN temp.erased_users")
    rows = db.execute(f"DELETE FROM events WHERE user_id IN temp.erased_users OR (user_id IS NULL AND"
                      f" ({SESSION_OF} IN temp.erased_users OR {SESSION_OF} IN temp.erased_sessions))"
                      f" RETURNING user_id, {SESSION_OF}").fetchall()
    found = {user if user is not None else session for user, session in rows} & users
    return Erased(found, {session for user, session in rows if user is not None})
