"""Control-plane resources (dataset groups, event trackers, ...) in SQLite under the data dir.

Each resource is one row: its ARN, kind, name, parent ARN and the JSON body that
Describe* returns. Writes are single statements, so a crash never leaves half a resource.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from serving.accounts import account_of, region_of

Body = dict[str, Any]


class AlreadyExists(Exception):
    pass


class ResourceStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS resources (arn TEXT PRIMARY KEY,"
                         " kind TEXT NOT NULL, name TEXT NOT NULL, parent TEXT,"
                         " created REAL NOT NULL, body TEXT NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS by_kind ON resources (kind, parent, created)")
        self._db.execute("CREATE INDEX IF NOT EXISTS by_tracking_id ON resources"
                         " (json_extract(body, '$.trackingId'))")

    def close(self) -> None:
        self._db.close()

    def create(self, kind: str, arn: str, name: str, body: Body, parent: str | None = None) -> Body:
        now = time.time()
        body = {**body, "creationDateTime": now, "lastUpdatedDateTime": now}
        with self._lock:
            try:
                self._db.execute("INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?)",
                                 (arn, kind, name, parent, now, orjson.dumps(body).decode()))
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
        """The resource of `kind` whose body has `field` = `value`. `field` is ours, never a
        caller's; written into the SQL so that the index on trackingId serves PutEvents' look-up
        (an unsigned PutEvents naming any trackingId makes one)."""
        if not field.isidentifier():
            raise ValueError(f"not a field name: {field!r}")
        with self._lock:
            row = self._db.execute(f"SELECT body FROM resources WHERE kind = ? AND"
                                   f" json_extract(body, '$.{field}') = ?", (kind, value)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def list(self, kind: str, parent: str | None = None, account: str | None = None,
             region: str | None = None) -> list[Body]:
        """Resources of a kind, oldest first: of one parent, and of one account's (and one
        region's) ARNs."""
        q, args = "SELECT arn, body FROM resources WHERE kind = ?", [kind]
        if parent is not None:
            q, args = q + " AND parent = ?", [kind, parent]
        with self._lock:
            rows = self._db.execute(q + " ORDER BY created, arn", args).fetchall()
        return [orjson.loads(body) for arn, body in rows if (account is None or account_of(arn) == account)
                and (region is None or region_of(arn) == region)]

    def elsewhere(self, kind: str, name: str, arn: str) -> str | None:
        """The ARN of the resource of `kind` and `name` that `arn` names in another region of its
        account, if there is one."""
        with self._lock:
            rows = self._db.execute("SELECT arn FROM resources WHERE kind = ? AND name = ?",
                                    (kind, name)).fetchall()
        return next((a for (a,) in rows if a != arn and _regionless(a) == _regionless(arn)), None)

    def count_children(self, parent: str, kind: str | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM resources WHERE parent = ?", [parent]
        if kind is not None:
            q, args = q + " AND kind = ?", [parent, kind]
        with self._lock:
            return self._db.execute(q, args).fetchone()[0]

    def update(self, arn: str, changes: Body) -> Body:
        with self._lock:
            row = self._db.execute("SELECT body FROM resources WHERE arn = ?", (arn,)).fetchone()
            body = {**orjson.loads(row[0]), **changes, "lastUpdatedDateTime": time.time()}
            self._db.execute("UPDATE resources SET body = ? WHERE arn = ?",
                             (orjson.dumps(body).decode(), arn))
        return body

    def transition(self, arn: str, status: str, changes: Body) -> Body | None:
        """Apply `changes` only if the resource's status is still `status` (a job claim)."""
        with self._lock:
            row = self._db.execute("SELECT body FROM resources WHERE arn = ? AND"
                                   " json_extract(body, '$.status') = ?", (arn, status)).fetchone()
            if row is None:
                return None
            body = {**orjson.loads(row[0]), **changes, "lastUpdatedDateTime": time.time()}
            cur = self._db.execute("UPDATE resources SET body = ? WHERE arn = ? AND"
                                   " json_extract(body, '$.status') = ?",
                                   (orjson.dumps(body).decode(), arn, status))
        return body if cur.rowcount == 1 else None

    def with_status(self, kinds: tuple[str, ...], status: str) -> list[tuple[str, Body]]:
        """(kind, body) of every resource of these kinds in this status, oldest first."""
        marks = ",".join("?" * len(kinds))
        with self._lock:
            rows = self._db.execute(f"SELECT kind, body FROM resources WHERE kind IN ({marks}) AND"
                                    " json_extract(body, '$.status') = ? ORDER BY created",
                                    (*kinds, status)).fetchall()
        return [(k, orjson.loads(b)) for k, b in rows]

    def delete(self, arn: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM resources WHERE arn = ?", (arn,))


def _regionless(arn: str) -> str:
    parts = arn.split(":", 5)
    return ":".join(parts[:3] + parts[4:]) if len(parts) == 6 else arn
