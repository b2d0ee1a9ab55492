"""The distributed control store: resources, jobs and access keys in PostgreSQL (OPZ_DATABASE_URL).

Same rows as the embedded store (`serving/control/sqlite_store.py`), with the bodies as JSONB. Every
write is one statement or one transaction, so API processes and trainers on any hosts
share it: a compare-and-set is an UPDATE whose WHERE names the expected status (and lease
holder), and a job is claimed with SELECT ... FOR UPDATE SKIP LOCKED, so concurrent claimers
each take a different job instead of queueing behind one.

One connection behind a lock: control-plane calls are few and short, and a single
connection keeps the semantics simple. A connection found broken (the database restarted)
is replaced before the next call; the call that met the break fails.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from serving.accounts import account_of, region_of
from serving.control.store import HOLDER, LEASE_UNTIL, AlreadyExists, Body, Claim, pending, regionless
from serving.sigv4 import Key

# pg_advisory_xact_lock's key while migrating: processes starting at once migrate one at a time
MIGRATION_LOCK = 0x6F707A_636F6E74  # "opz" "cont"
# The schema, one entry per version, applied in order at start and counted in schema_version.
MIGRATIONS: list[tuple[str, ...]] = [
    ("CREATE TABLE resources (arn TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, parent TEXT,"
     " created DOUBLE PRECISION NOT NULL, body JSONB NOT NULL)",
     "CREATE INDEX resources_by_kind ON resources (kind, parent, created)",
     "CREATE INDEX resources_by_parent ON resources (parent, kind)",
     # the job runners poll by status; PutEvents looks a tracker up by its trackingId
     "CREATE INDEX resources_by_status ON resources (kind, (body->>'status'))",
     "CREATE INDEX resources_by_tracking_id ON resources ((body->>'trackingId'))",
     "CREATE TABLE access_keys (access_key_id TEXT PRIMARY KEY, secret TEXT NOT NULL, account TEXT NOT NULL,"
     " created DOUBLE PRECISION NOT NULL)"),
]
# pg_try_advisory_lock's key of the one process that schedules automatic training (serving/schedule.py)
SCHEDULER_LOCK = 0x6F707A_73636864  # "opz" "schd"
# byte order, as SQLite compares: the same listing order whatever the database's locale
BY_AGE = ' ORDER BY created, arn COLLATE "C"'


class PostgresStore:
    """A ControlStore (serving/control/store.py) in a PostgreSQL database."""

    def __init__(self, url: str, connect_timeout_s: int = 10) -> None:
        self._url, self._timeout = url, connect_timeout_s
        self._lock = threading.Lock()
        self._conn = self._connect()
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=self._timeout,
                               application_name="openpersonalize")
        set_json_dumps(_json, conn)  # as the embedded store writes bodies: NaN as null, same floats
        set_json_loads(orjson.loads, conn)
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._conn.closed or self._conn.broken:
                self._conn = self._connect()
            yield self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _migrate(self) -> None:
        with self._connection() as conn, conn.transaction():
            # held to the end of this transaction: a second process waits, then finds it done
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                         " applied DOUBLE PRECISION NOT NULL)")
            current = _one(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
            for version, statements in pending(current, MIGRATIONS):
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (%s, %s)", (version, time.time()))

    def schema_version(self) -> int:
        with self._connection() as conn:
            return _one(conn.execute("SELECT MAX(version) FROM schema_version"))

    def create(self, kind: str, arn: str, name: str, body: Body, parent: str | None = None) -> Body:
        now = time.time()
        body = {**body, "creationDateTime": now, "lastUpdatedDateTime": now}
        with self._connection() as conn:
            try:
                conn.execute("INSERT INTO resources (arn, kind, name, parent, created, body)"
                             " VALUES (%s, %s, %s, %s, %s, %s)", (arn, kind, name, parent, now, Jsonb(body)))
            except psycopg.errors.UniqueViolation:
                raise AlreadyExists(arn) from None
        return body

    def get(self, arn: str, kind: str | None = None) -> Body | None:
        with self._connection() as conn:
            row = conn.execute("SELECT kind, body FROM resources WHERE arn = %s", (arn,)).fetchone()
        if row is None or (kind is not None and row[0] != kind):
            return None
        return row[1]

    def find(self, kind: str, field: str, value: str) -> Body | None:
        """The field is a literal in the SQL, so that the index on trackingId serves PutEvents'
        look-up (an unsigned PutEvents naming any trackingId makes one)."""
        if not field.isidentifier():
            raise ValueError(f"not a field name: {field!r}")
        query = sql.SQL("SELECT body FROM resources WHERE kind = %s AND body->>{} = %s LIMIT 1").format(
            sql.Literal(field))
        with self._connection() as conn:
            row = conn.execute(query, (kind, value)).fetchone()
        return None if row is None else row[0]

    def list(self, kind: str, parent: str | None = None, account: str | None = None,
             region: str | None = None) -> list[Body]:
        q, args = "SELECT arn, body FROM resources WHERE kind = %s", [kind]
        if parent is not None:
            q, args = q + " AND parent = %s", [kind, parent]
        with self._connection() as conn:
            rows = conn.execute(q + BY_AGE, args).fetchall()
        return [body for arn, body in rows if (account is None or account_of(arn) == account)
                and (region is None or region_of(arn) == region)]

    def elsewhere(self, kind: str, name: str, arn: str) -> str | None:
        with self._connection() as conn:
            rows = conn.execute("SELECT arn FROM resources WHERE kind = %s AND name = %s",
                                (kind, name)).fetchall()
        return next((a for (a,) in rows if a != arn and regionless(a) == regionless(arn)), None)

    def count_children(self, parent: str, kind: str | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM resources WHERE parent = %s", [parent]
        if kind is not None:
            q, args = q + " AND kind = %s", [parent, kind]
        with self._connection() as conn:
            return _one(conn.execute(q, args))

    def update(self, arn: str, changes: Body) -> Body:
        merged = Jsonb({**changes, "lastUpdatedDateTime": time.time()})
        with self._connection() as conn:
            row = conn.execute("UPDATE resources SET body = body || %s WHERE arn = %s RETURNING body",
                               (merged, arn)).fetchone()
        if row is None:
            raise KeyError(arn)
        return row[0]

    def transition(self, arn: str, status: str, changes: Body, *, holder: str | None = None) -> Body | None:
        q = "UPDATE resources SET body = body || %s WHERE arn = %s AND body->>'status' = %s"
        args: list[object] = [Jsonb({**changes, "lastUpdatedDateTime": time.time()}), arn, status]
        if holder is not None:
            q, args = q + f" AND body->>'{HOLDER}' = %s", [*args, holder]
        with self._connection() as conn:
            row = conn.execute(q + " RETURNING body", args).fetchone()
        return None if row is None else row[0]

    def claim(self, kinds: Sequence[str], *, waiting: str, running: str, holder: str, lease_until: float,
              now: float, dead: Collection[str] = (), skip: Collection[str] = ()) -> Claim | None:
        find = ("SELECT arn, kind, body FROM resources"
                " WHERE kind = ANY(%(kinds)s) AND NOT arn = ANY(%(skip)s) AND (body->>'status' = %(waiting)s"
                " OR (body->>'status' = %(running)s AND"
                f" (COALESCE((body->>'{LEASE_UNTIL}')::float8, 0) < %(now)s"
                f" OR body->>'{HOLDER}' = ANY(%(dead)s))))"
                " ORDER BY body->>'status' = %(running)s DESC, created, arn COLLATE \"C\""
                " LIMIT 1 FOR UPDATE SKIP LOCKED")  # a job another claimer is taking is passed over
        args = {"kinds": list(kinds), "skip": list(skip), "waiting": waiting, "running": running,
                "now": now, "dead": list(dead)}
        lease = Jsonb({"status": running, HOLDER: holder, LEASE_UNTIL: lease_until,
                       "lastUpdatedDateTime": time.time()})
        with self._connection() as conn, conn.transaction():
            row = conn.execute(find, args).fetchone()
            if row is None:
                return None
            arn, kind, before = row
            body = _one(conn.execute("UPDATE resources SET body = body || %s WHERE arn = %s RETURNING body",
                                     (lease, arn)))
        return Claim(kind, before, body)

    def with_status(self, kinds: tuple[str, ...], status: str) -> list[tuple[str, Body]]:
        with self._connection() as conn:
            rows = conn.execute("SELECT kind, body FROM resources WHERE kind = ANY(%s)"
                                " AND body->>'status' = %s" + BY_AGE, (list(kinds), status)).fetchall()
        return [(k, b) for k, b in rows]

    def delete(self, arn: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM resources WHERE arn = %s", (arn,))

    def add_key(self, key: Key, created: float) -> None:
        with self._connection() as conn:
            try:
                conn.execute("INSERT INTO access_keys VALUES (%s, %s, %s, %s)",
                             (key.access_key_id, key.secret, key.account, created))
            except psycopg.errors.UniqueViolation:
                raise AlreadyExists(key.access_key_id) from None

    def delete_key(self, access_key_id: str) -> bool:
        with self._connection() as conn:
            cur = conn.execute("DELETE FROM access_keys WHERE access_key_id = %s", (access_key_id,))
        return cur.rowcount == 1

    def keys(self) -> list[Key]:
        with self._connection() as conn:
            rows = conn.execute("SELECT access_key_id, secret, account FROM access_keys"
                                " ORDER BY created, access_key_id COLLATE \"C\"").fetchall()
        return [Key(*r) for r in rows]


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _one(cursor: psycopg.Cursor[Any]) -> Any:
    row = cursor.fetchone()
    assert row is not None, "an aggregate or RETURNING of a row just locked"
    return row[0]


class AdvisoryLeader:
    """The scheduler's leader among processes on any hosts: the one holding a session-level
    advisory lock, on a connection of its own. PostgreSQL drops the lock with the connection,
    however its holder ends (a kill -9 included, once the server notices the dead socket), and
    the next process to ask takes it."""

    def __init__(self, url: str, key: int = SCHEDULER_LOCK, connect_timeout_s: int = 10) -> None:
        self._url, self._key, self._timeout = url, key, connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    def held(self) -> bool:
        try:
            if self._conn is not None:
                self._conn.execute("SELECT 1")  # still connected: still the leader
                return True
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=self._timeout)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
            if row and row[0]:
                self._conn = conn
                return True
            conn.close()
            return False
        except psycopg.Error:
            self.release()  # the connection (and so the lock) is gone: ask again next tick
            return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
