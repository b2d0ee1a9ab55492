"""The interactions archive training reads: every accepted event once, per dataset group.

One SQLite file per dataset group under `<data dir>/archive/`, keyed by event id, so a
redelivered event is ignored, as Personalize ignores "any subsequent events after the
first with the same event ID" in training. Rows carry their UTC day for day-range reads.
Several worker processes on one host may write the same file (WAL, busy timeout).
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stream.contract import Event, decode_event, encode_event

ARCHIVE_GROUP = "opz-archive"


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

    async def add(self, events: Sequence[Event]) -> int:
        """Store events not seen before (by event id); returns how many were new."""
        by_group: dict[str, list[Event]] = defaultdict(list)
        for e in events:
            by_group[e.dataset_group].append(e)
        return sum([await self._run(self._add, g, evs) for g, evs in by_group.items()])

    def _add(self, dataset_group: str, events: list[Event]) -> int:
        db = self._db(dataset_group)
        rows = [(e.event_id, time.strftime("%Y-%m-%d", time.gmtime(e.sent_at)), e.user_id,
                 e.item_id, e.event_type, e.sent_at, encode_event(e)) for e in events]
        with db:
            db.execute("BEGIN IMMEDIATE")
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO events (event_id, day, user_id, item_id,"
                           " event_type, sent_at, record) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            return db.total_changes - before

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
