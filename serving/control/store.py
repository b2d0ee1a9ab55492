"""The control-plane seam: where resources, the jobs among them, and access keys live.

Embedded (the default): SQLite under the data dir (`serving/control/sqlite_store.py`, control.db), shared
by the processes of one host through that file. With OPZ_DATABASE_URL: PostgreSQL
(`serving/control/postgres_store.py`), so API processes and trainers on any hosts share one control
plane and one job queue without a shared disk. Both pass the one suite in
tests/integration/test_control_store.py; nothing else knows which one runs.

Jobs are resources whose body carries a status. A claimer takes one with `claim`, which
records a lease in the body (`runner`, `leaseUntil`) and renews it with `transition(...,
holder=...)` while it works; a job whose lease lapsed (its claimer died, on whatever host) is
claimable again, and its old claimer's renewals fail from then on, so it stops.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from kernel.settings import Settings
from serving.sigv4 import Key

Body = dict[str, Any]
Migration = TypeVar("Migration")
HOLDER, LEASE_UNTIL = "runner", "leaseUntil"  # the lease's fields in a claimed job's body


def camel(kind: str) -> str:
    """A kind as Personalize's members name it: dataset-import-job -> datasetImportJob (the
    Describe answer's key; with "Arn", its ARN member)."""
    head, *rest = kind.split("-")
    return head + "".join(w.capitalize() for w in rest)


class AlreadyExists(Exception):
    pass


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer openpersonalize: this one would misread it."""


class Claim(NamedTuple):
    kind: str
    before: Body  # as it was: a takeover names the runner it replaces, a requeued job its interruptions
    body: Body  # as claimed, lease included


class ControlStore(Protocol):
    """Resources by ARN (kind, name, parent ARN and the JSON body Describe* returns), oldest
    first by creation time then ARN, and the access keys signed calls are checked against.

    Callable from any thread. Every write is atomic, and the compare-and-set ones
    (`transition`, `claim`) hold across processes, so of several claimers exactly one wins.
    """

    def close(self) -> None:
        """Release the database."""

    def schema_version(self) -> int:
        """The migrations applied to the database (all of this code's once it is open)."""

    def create(self, kind: str, arn: str, name: str, body: Body, parent: str | None = None) -> Body:
        """Store a new resource, stamped with creationDateTime and lastUpdatedDateTime; raises
        AlreadyExists if the ARN is taken."""

    def get(self, arn: str, kind: str | None = None) -> Body | None:
        """The body, or None if there is none (of that kind)."""

    def find(self, kind: str, field: str, value: str) -> Body | None:
        """The resource of `kind` whose body has `field` = `value` (a trackingId: indexed).
        `field` is ours, never a caller's."""

    def list(self, kind: str, parent: str | None = None, account: str | None = None,
             region: str | None = None) -> list[Body]:
        """Resources of a kind, oldest first: of one parent, and of one account's (and one
        region's) ARNs."""

    def elsewhere(self, kind: str, name: str, arn: str) -> str | None:
        """The ARN of the resource of `kind` and `name` that `arn` names in another region of
        its account, if there is one."""

    def count_children(self, parent: str, kind: str | None = None) -> int:
        """Resources (of a kind) whose parent is `parent`."""

    def update(self, arn: str, changes: Body) -> Body:
        """Merge `changes` into the body (top-level keys); KeyError if there is no such resource."""

    def transition(self, arn: str, status: str, changes: Body, *, holder: str | None = None) -> Body | None:
        """Merge `changes` only if the status is still `status` (and, given `holder`, the job's
        lease is still held by it); None if not."""

    def claim(self, kinds: Sequence[str], *, waiting: str, running: str, holder: str, lease_until: float,
              now: float, dead: Collection[str] = (), skip: Collection[str] = ()) -> Claim | None:
        """Take the oldest job of `kinds` that is `waiting`, or `running` under a lease that
        lapsed before `now` or that one of `dead` holds (claimers known to be gone), preferring
        those taken over, and never one of `skip` (the ARNs the claimer runs already). It becomes
        `running`, held by `holder` until `lease_until`. Of concurrent claimers, on any hosts,
        each job goes to one."""

    def with_status(self, kinds: tuple[str, ...], status: str) -> list[tuple[str, Body]]:
        """(kind, body) of every resource of these kinds in this status, oldest first."""

    def delete(self, arn: str) -> None:
        """Remove it (nothing if it is gone already)."""

    def add_key(self, key: Key, created: float) -> None:
        """Store an access key; AlreadyExists if its id is taken."""

    def delete_key(self, access_key_id: str) -> bool:
        """False if there was no such key."""

    def keys(self) -> list[Key]:
        """The stored access keys, oldest first."""


def open_control_store(settings: Settings) -> ControlStore:
    """The store settings pick: PostgreSQL where OPZ_DATABASE_URL is set, else control.db in
    the data dir. Either is migrated to this code's schema before it is returned."""
    if settings.database_url:
        from serving.control.postgres_store import PostgresStore  # psycopg: only where it is used

        return PostgresStore(settings.database_url.get_secret_value())
    from serving.control.sqlite_store import ResourceStore

    return ResourceStore(settings.data_dir / "control.db")


def claimable(body: Body, *, waiting: str, running: str, now: float, dead: Collection[str]) -> bool:
    """`claim`'s rule on one job, for a store that does not say it in its query. A running job
    without a lease (claimed before leases existed) counts as lapsed."""
    if body.get("status") == waiting:
        return True
    return body.get("status") == running and (
        float(body.get(LEASE_UNTIL) or 0) < now or body.get(HOLDER, "") in dead)


def regionless(arn: str) -> str:
    """The ARN without its region: the same resource name in another region of the account."""
    parts = arn.split(":", 5)
    return ":".join(parts[:3] + parts[4:]) if len(parts) == 6 else arn


def pending(current: int, migrations: Sequence[Migration]) -> list[tuple[int, Migration]]:
    """(version, migration) of those a database at version `current` lacks, in order. A
    database ahead of this code (migrated by a newer release) is refused rather than misread."""
    if current > len(migrations):
        raise SchemaTooNew(f"the control database is at schema version {current}, newer than this "
                           f"openpersonalize knows ({len(migrations)}): run the release that migrated it")
    return list(enumerate(migrations[current:], start=current + 1))
