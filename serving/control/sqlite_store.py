"""The embedded control store: resources, jobs and access keys in SQLite under the data dir.

Each resource is one row: its ARN, kind, name, parent ARN and the JSON body that Describe*
returns. The processes of one host (API, trainer) share the file; every read-modify-write
holds SQLite's write lock (BEGIN IMMEDIATE), so a compare-and-set made here holds against the
others too, and a crash never leaves half a change.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import orjson

from serving.accounts import account_of, region_of
from serving.control.store import (
    HOLDER,
    LEASE_UNTIL,
    AlreadyExists,
    Body,
    Claim,
    claimable,
    pending,
    regionless,
)
from serving.sigv4 import Key

# The schema, one entry per version, applied in order at start and counted in schema_version.
MIGRATIONS: list[tuple[str, ...]] = [
    # 1: what control.db held before versions were counted (IF NOT EXISTS adopts such a file)
    ("CREATE TABLE IF NOT EXISTS resources (arn TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,"
     " parent TEXT, created REAL NOT NULL, body TEXT NOT NULL)",
     "CREATE INDEX IF NOT EXISTS by_kind ON resources (kind, parent, created)",
     "CREATE INDEX IF NOT EXISTS by_tracking_id ON resources (json_extract(body, '$.trackingId'))",
     "CREATE TABLE IF NOT EXISTS access_keys (access_key_id TEXT PRIMARY KEY, secret TEXT NOT NULL,"
     " account TEXT NOT NULL, created REAL NOT NULL)"),
    # 2: job leases. A job claimed before them ends its lease 30 s after its last heartbeat
    # (when it counted as abandoned then); the job runners poll by status, children by parent.
    ("UPDATE resources SET body = json_set(body, '$.leaseUntil', json_extract(body, '$.heartbeat') + 30)"
     " WHERE json_extract(body, '$.heartbeat') IS NOT NULL AND json_extract(body, '$.leaseUntil') IS NULL",
     "CREATE INDEX IF NOT EXISTS by_status ON resources (kind, json_extract(body, '$.status'))",
     "CREATE INDEX IF NOT EXISTS by_parent ON resources (parent, kind)"),
]


class ResourceStore:
    """A ControlStore (serving/control/store.py) in one SQLite file, WAL, synchronous=FULL."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        for suffix in ("", "-wal", "-shm"):  # access keys' secrets inside: the server's user only
            p = path.with_name(path.name + suffix)
            if p.exists():
                os.chmod(p, 0o600)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One transaction holding the database's write lock from its first read, so what it
        read is still true when it writes, for every process on the file."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._writing() as db:  # a second process starting at once waits, then finds it done
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                       " applied REAL NOT NULL)")
            current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            for version, statements in pending(current, MIGRATIONS):
                for statement in statements:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?, ?)", (version, time.time()))

    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]

    def create(self, kind: str, arn: str, name: str, body: Body, parent: str | None = None) -> Body:
        now = time.time()
        body = {**body, "creationDateTime": now, "lastUpdatedDateTime": now}
        with self._lock:
            try:
                self._db.execute("INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?)",
                                 (arn, kind, name, parent, now, _text(body)))
            except sqlite3.IntegrityError:
                raise AlreadyExists(arn) from None
        return body

    def get(self, arn: str, kind: str | None = None) -> Body | None:
        with self._lock:
            row = self._db.execute("SELECT kind, body FROM resources WHERE arn = ?", (arn,)).fetchone()
        if row is None or (kind is not None and row[0] != kind):
            return None
        return orjson.loads(row[1])

    def find(self, kind: str, field: str, value: str) -> Body | None:
        """Written into the SQL so that the index on trackingId serves PutEvents' look-up (an
        unsigned PutEvents naming any trackingId makes one)."""
        if not field.isidentifier():
            raise ValueError(f"not a field name: {field!r}")
        with self._lock:
            row = self._db.execute(f"SELECT body FROM resources WHERE kind = ? AND"
                                   f" json_extract(body, '$.{field}') = ?", (kind, value)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def list(self, kind: str, parent: str | None = None, account: str | None = None,
             region: str | None = None) -> list[Body]:
        q, args = "SELECT arn, body FROM resources WHERE kind = ?", [kind]
        if parent is not None:
            q, args = q + " AND parent = ?", [kind, parent]
        with self._lock:
            rows = self._db.execute(q + " ORDER BY created, arn", args).fetchall()
        return [orjson.loads(body) for arn, body in rows if (account is None or account_of(arn) == account)
                and (region is None or region_of(arn) == region)]

    def elsewhere(self, kind: str, name: str, arn: str) -> str | None:
        with self._lock:
            rows = self._db.execute("SELECT arn FROM resources WHERE kind = ? AND name = ?",
                                    (kind, name)).fetchall()
        return next((a for (a,) in rows if a != arn and regionless(a) == regionless(arn)), None)

    def count_children(self, parent: str, kind: str | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM resources WHERE parent = ?", [parent]
        if kind is not None:
            q, args = q + " AND kind = ?", [parent, kind]
        with self._lock:
            return self._db.execute(q, args).fetchone()[0]

    def update(self, arn: str, changes: Body) -> Body:
        with self._writing() as db:
            row = db.execute("SELECT body FROM resources WHERE arn = ?", (arn,)).fetchone()
            if row is None:
                raise KeyError(arn)
            body = {**orjson.loads(row[0]), **changes, "lastUpdatedDateTime": time.time()}
            db.execute("UPDATE resources SET body = ? WHERE arn = ?", (_text(body), arn))
        return body

    def transition(self, arn: str, status: str, changes: Body, *, holder: str | None = None) -> Body | None:
        with self._writing() as db:
            row = db.execute("SELECT body FROM resources WHERE arn = ? AND"
                             " json_extract(body, '$.status') = ?", (arn, status)).fetchone()
            if row is None:
                return None
            body = orjson.loads(row[0])
            if holder is not None and body.get(HOLDER) != holder:
                return None
            body = {**body, **changes, "lastUpdatedDateTime": time.time()}
            db.execute("UPDATE resources SET body = ? WHERE arn = ?", (_text(body), arn))
        return body

    def claim(self, kinds: Sequence[str], *, waiting: str, running: str, holder: str, lease_until: float,
              now: float, dead: Collection[str] = (), skip: Collection[str] = ()) -> Claim | None:
        marks = ",".join("?" * len(kinds))
        with self._writing() as db:  # the others' claims wait for this one: no job is taken twice
            rows = db.execute(f"SELECT arn, kind, body FROM resources WHERE kind IN ({marks}) AND"
                              " json_extract(body, '$.status') IN (?, ?)"
                              " ORDER BY json_extract(body, '$.status') = ? DESC, created, arn",
                              (*kinds, waiting, running, running)).fetchall()
            for arn, kind, text in rows:
                before = orjson.loads(text)
                if arn in skip or not claimable(before, waiting=waiting, running=running, now=now, dead=dead):
                    continue
                body = {**before, "status": running, HOLDER: holder, LEASE_UNTIL: lease_until,
                        "lastUpdatedDateTime": time.time()}
                db.execute("UPDATE resources SET body = ? WHERE arn = ?", (_text(body), arn))
                return Claim(kind, before, body)
        return None

    def with_status(self, kinds: tuple[str, ...], status: str) -> list[tuple[str, Body]]:
        marks = ",".join("?" * len(kinds))
        with self._lock:
            rows = self._db.execute(f"SELECT kind, body FROM resources WHERE kind IN ({marks}) AND"
                                    " json_extract(body, '$.status') = ? ORDER BY created, arn",
                                    (*kinds, status)).fetchall()
        return [(k, orjson.loads(b)) for k, b in rows]

    def delete(self, arn: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM resources WHERE arn = ?", (arn,))

    def add_key(self, key: Key, created: float) -> None:
        with self._lock:
            try:
                self._db.execute("INSERT INTO access_keys VALUES (?, ?, ?, ?)",
                                 (key.access_key_id, key.secret, key.account, created))
            except sqlite3.IntegrityError:
                raise AlreadyExists(key.access_key_id) from None

    def delete_key(self, access_key_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM access_keys WHERE access_key_id = ?", (access_key_id,))
        return cur.rowcount == 1

    def keys(self) -> list[Key]:
        with self._lock:
            rows = self._db.execute("SELECT access_key_id, secret, account FROM access_keys"
                                    " ORDER BY created, access_key_id").fetchall()
        return [Key(*r) for r in rows]


def _text(body: Body) -> str:
    return orjson.dumps(body).decode()
