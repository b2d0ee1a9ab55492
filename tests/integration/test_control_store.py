"""The ControlStore seam (serving/control/store.py): every test runs on control.db and on a
real PostgreSQL database (scripts/services.py), through `open_control_store` as the servers
call it. Claims race between real processes; a claimer that dies is one killed with SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kernel.settings import Settings
from serving.control import postgres_store, sqlite_store
from serving.control.store import (
    HOLDER,
    LEASE_UNTIL,
    AlreadyExists,
    Claim,
    ControlStore,
    SchemaTooNew,
    open_control_store,
)
from serving.sigv4 import Key

pytestmark = pytest.mark.integration
PENDING, RUNNING = "CREATE PENDING", "CREATE IN_PROGRESS"
Processes = list[subprocess.Popen[str]]
JOB = "dataset-import-job"
# a claimer in a process of its own: `claim-all` takes jobs until none is left, a millisecond
# of work each, from when the file `go` exists (so that the claimers race); `claim-one` takes
# one and hangs until killed; `open` opens the store (migrating it) once `go` exists
CLAIMER = """
import json, sys, time
from pathlib import Path
from serving.control.store import open_control_store
from kernel.settings import Settings

data_dir, url, mode, holder, lease_s = sys.argv[1:6]
go = Path(data_dir).parent / "go"
opened = lambda: open_control_store(Settings(data_dir=data_dir, database_url=url or None))
store = None if mode == "open" else opened()
if mode != "claim-one":
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.002)
store = store or opened()
while mode != "open":
    now = time.time()
    got = store.claim(["dataset-import-job"], waiting="CREATE PENDING", running="CREATE IN_PROGRESS",
                      holder=holder, lease_until=now + float(lease_s), now=now)
    if got is None:
        break
    print(json.dumps(got.body["datasetImportJobArn"]), flush=True)
    time.sleep(600 if mode == "claim-one" else 0.001)
print("done", flush=True)
"""


def arn(kind: str, name: str, region: str = "us-east-1", account: str = "000000000000") -> str:
    return f"arn:aws:personalize:{region}:{account}:{kind}/{name}"


def job(store: ControlStore, name: str, status: str = PENDING, **fields: object) -> str:
    a = arn(JOB, name)
    store.create(JOB, a, name, {"datasetImportJobArn": a, "status": status, **fields})
    return a


def claim(store: ControlStore, holder: str = "h:1", *, now: float | None = None, lease_s: float = 30.0,
          dead: tuple[str, ...] = (), skip: tuple[str, ...] = (), kinds: tuple[str, ...] = (JOB,)
          ) -> Claim | None:
    now = time.time() if now is None else now
    return store.claim(kinds, waiting=PENDING, running=RUNNING, holder=holder, lease_until=now + lease_s,
                       now=now, dead=dead, skip=skip)


def claimer(settings: Settings, mode: str, holder: str, lease_s: float = 30.0) -> subprocess.Popen[str]:
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    return subprocess.Popen([sys.executable, "-c", CLAIMER, str(settings.data_dir), url, mode, holder,
                             str(lease_s)], stdout=subprocess.PIPE, text=True)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


# ------------------------------------------------------------------------------ resources

def test_create_get_and_duplicates(control_store: ControlStore) -> None:
    group = arn("dataset-group", "shop")
    before = time.time()
    body = control_store.create("dataset-group", group, "shop", {"datasetGroupArn": group, "name": "shop",
                                                                  "nested": {"a": [1, 2.5, None, "é"]}})
    assert before <= body["creationDateTime"] == body["lastUpdatedDateTime"] <= time.time()
    assert control_store.get(group) == body
    assert control_store.get(group, "dataset-group") == body
    assert control_store.get(group, "dataset") is None
    assert control_store.get(arn("dataset-group", "other")) is None
    with pytest.raises(AlreadyExists):
        control_store.create("dataset-group", group, "shop", {"datasetGroupArn": group})
    assert control_store.get(group) == body, "the first one is kept whole"


def test_find_by_a_body_field(control_store: ControlStore) -> None:
    group = arn("dataset-group", "shop")
    for name, tracking_id in (("web", "t-web"), ("app", "t-app")):
        control_store.create("event-tracker", arn("event-tracker", name), name,
                             {"eventTrackerArn": arn("event-tracker", name), "trackingId": tracking_id},
                             parent=group)
    assert control_store.find("event-tracker", "trackingId", "t-app")["eventTrackerArn"] == \
        arn("event-tracker", "app")
    assert control_store.find("event-tracker", "trackingId", "t-none") is None
    assert control_store.find("dataset-group", "trackingId", "t-app") is None, "of that kind only"
    with pytest.raises(ValueError, match="not a field name"):
        control_store.find("event-tracker", "trackingId') = 'x' OR ('1", "t-app")


def test_list_oldest_first_by_parent_account_and_region(control_store: ControlStore,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    group, other = arn("dataset-group", "a"), arn("dataset-group", "b")
    names = ["z", "m", "a"]
    for name in names:  # made in this order: z is the oldest
        control_store.create("filter", arn("filter", name), name, {"filterArn": arn("filter", name)}, group)
        time.sleep(0.002)
    control_store.create("filter", arn("filter", "x"), "x", {"filterArn": arn("filter", "x")}, other)
    singapore = arn("filter", "s", region="ap-southeast-1")
    control_store.create("filter", singapore, "s", {"filterArn": singapore}, group)
    theirs = arn("filter", "t", account="123456789012")
    control_store.create("filter", theirs, "t", {"filterArn": theirs}, group)

    def listed(**kw: str) -> list[str]:
        return [b["filterArn"] for b in control_store.list("filter", **kw)]

    assert listed(parent=group) == [arn("filter", n) for n in names] + [singapore, theirs]
    assert listed() == [arn("filter", n) for n in names] + [arn("filter", "x"), singapore, theirs]
    assert listed(parent=group, account="000000000000") == [arn("filter", n) for n in names] + [singapore]
    assert listed(parent=group, account="000000000000", region="ap-southeast-1") == [singapore]
    assert listed(account="123456789012") == [theirs]
    assert control_store.list("campaign") == []
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)  # created at once: by ARN, bytewise
    for name in ("b", "_", "B", "a"):
        control_store.create("solution", arn("solution", name), name, {"solutionArn": arn("solution", name)})
    assert [b["solutionArn"] for b in control_store.list("solution")] == \
        [arn("solution", n) for n in ("B", "_", "a", "b")]


def test_elsewhere_names_the_same_resource_in_another_region(control_store: ControlStore) -> None:
    here, there = arn("dataset-group", "shop"), arn("dataset-group", "shop", region="eu-west-1")
    control_store.create("dataset-group", here, "shop", {"datasetGroupArn": here})
    assert control_store.elsewhere("dataset-group", "shop", here) is None
    assert control_store.elsewhere("dataset-group", "shop", there) == here
    assert control_store.elsewhere("dataset-group", "shop", arn("dataset-group", "shop",
                                                                account="123456789012")) is None
    assert control_store.elsewhere("dataset", "shop", there) is None


def test_count_children(control_store: ControlStore) -> None:
    group = arn("dataset-group", "shop")
    control_store.create("dataset-group", group, "shop", {})
    for kind, name in (("dataset", "i"), ("dataset", "u"), ("event-tracker", "web")):
        control_store.create(kind, arn(kind, name), name, {}, parent=group)
    assert control_store.count_children(group) == 3
    assert control_store.count_children(group, "dataset") == 2
    assert control_store.count_children(group, "filter") == 0
    assert control_store.count_children(arn("dataset-group", "none")) == 0


def test_update_merges_and_stamps(control_store: ControlStore) -> None:
    a = arn("campaign", "c")
    made = control_store.create("campaign", a, "c", {"campaignArn": a, "minProvisionedTPS": 1, "keep": "me"})
    time.sleep(0.002)
    body = control_store.update(a, {"minProvisionedTPS": 5, "latestCampaignUpdate": {"status": "ACTIVE"}})
    assert body == control_store.get(a)
    assert body["minProvisionedTPS"] == 5 and body["keep"] == "me"
    assert body["latestCampaignUpdate"] == {"status": "ACTIVE"}
    assert body["creationDateTime"] == made["creationDateTime"] < body["lastUpdatedDateTime"]
    with pytest.raises(KeyError):
        control_store.update(arn("campaign", "none"), {"x": 1})


def test_transition_only_from_the_expected_status_and_holder(control_store: ControlStore) -> None:
    a = job(control_store, "j")
    assert control_store.transition(a, RUNNING, {"status": "ACTIVE"}) is None
    got = control_store.transition(a, PENDING, {"status": RUNNING, HOLDER: "h:1"})
    assert got is not None and got == control_store.get(a) and got["status"] == RUNNING
    assert control_store.transition(a, PENDING, {"status": RUNNING}) is None, "a second claim loses"
    assert control_store.transition(a, RUNNING, {"progress": {"rows": 1}}, holder="h:2") is None
    renewed = control_store.transition(a, RUNNING, {"progress": {"rows": 2}}, holder="h:1")
    assert renewed is not None and renewed["progress"] == {"rows": 2}
    assert control_store.transition(a, RUNNING, {"status": "ACTIVE"})["status"] == "ACTIVE"
    assert control_store.transition(arn(JOB, "none"), PENDING, {"status": RUNNING}) is None


def test_with_status_and_delete(control_store: ControlStore) -> None:
    first, second = job(control_store, "a"), job(control_store, "b", status=RUNNING)
    time.sleep(0.002)
    third = job(control_store, "c")
    version = arn("solution-version", "v")
    control_store.create("solution-version", version, "v", {"solutionVersionArn": version, "status": PENDING})
    assert [b["datasetImportJobArn"] for _, b in control_store.with_status((JOB,), PENDING)] == [first, third]
    assert [(k, b["solutionVersionArn"] if k != JOB else b["datasetImportJobArn"])
            for k, b in control_store.with_status((JOB, "solution-version"), PENDING)] == \
        [(JOB, first), (JOB, third), ("solution-version", version)]
    assert [b["datasetImportJobArn"] for _, b in control_store.with_status((JOB,), RUNNING)] == [second]
    control_store.delete(first)
    control_store.delete(first)  # gone already: nothing to do
    assert control_store.get(first) is None
    assert [b["datasetImportJobArn"] for _, b in control_store.with_status((JOB,), PENDING)] == [third]


def test_access_keys(control_store: ControlStore) -> None:
    keys = [Key(f"AKOP{i:016d}", f"secret-{i}", "123456789012") for i in range(3)]
    for i, key in enumerate(keys):
        control_store.add_key(key, 1_700_000_000.0 + i)
    assert control_store.keys() == keys
    with pytest.raises(AlreadyExists):
        control_store.add_key(Key(keys[0].access_key_id, "another", "000000000000"), time.time())
    assert control_store.delete_key(keys[1].access_key_id) is True
    assert control_store.delete_key(keys[1].access_key_id) is False
    assert control_store.keys() == [keys[0], keys[2]]


def test_used_from_many_threads(control_store: ControlStore) -> None:
    """The API calls the store from its threads: one write each, none lost."""
    def make(i: int) -> None:
        for n in range(10):
            name = f"{i}-{n}"
            control_store.create("filter", arn("filter", name), name, {"n": n})
            control_store.update(arn("filter", name), {"seen": True})

    threads = [threading.Thread(target=make, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bodies = control_store.list("filter")
    assert len(bodies) == 40 and all(b["seen"] for b in bodies)


# ------------------------------------------------------------------------------------ jobs

def test_claims_take_the_oldest_pending_job_with_a_lease(control_store: ControlStore) -> None:
    first = job(control_store, "a")
    time.sleep(0.002)
    second = job(control_store, "b")
    version = arn("solution-version", "v")
    control_store.create("solution-version", version, "v", {"solutionVersionArn": version, "status": PENDING})
    now = time.time()
    got = claim(control_store, "h:1", now=now, lease_s=30)
    assert got is not None and got.kind == JOB and got.before["status"] == PENDING
    assert got.body["datasetImportJobArn"] == first and got.body == control_store.get(first)
    assert (got.body["status"], got.body[HOLDER], got.body[LEASE_UNTIL]) == (RUNNING, "h:1", now + 30)
    assert claim(control_store, "h:2", skip=(second,)) is None, "held, skipped, or of another kind"
    assert claim(control_store, "h:2").body["datasetImportJobArn"] == second
    assert claim(control_store, "h:2") is None
    assert claim(control_store, "h:2", kinds=(JOB, "solution-version")).kind == "solution-version"


def test_a_lapsed_or_dead_claimers_job_is_taken_over_first(control_store: ControlStore) -> None:
    now = time.time()
    held = job(control_store, "held", status=RUNNING, **{HOLDER: "h:1", LEASE_UNTIL: now + 30})
    lapsed = job(control_store, "lapsed", status=RUNNING, **{HOLDER: "h:2", LEASE_UNTIL: now - 1})
    job(control_store, "leaseless", status=RUNNING, **{HOLDER: "h:3"})
    job(control_store, "pending")
    dead = job(control_store, "dead", status=RUNNING, **{HOLDER: "h:4", LEASE_UNTIL: now + 30})
    order = [claim(control_store, "h:9", now=now, dead=("h:4",)) for _ in range(4)]
    assert [(c.body["datasetImportJobArn"].rsplit("/")[-1], c.before.get(HOLDER)) for c in order] == \
        [("lapsed", "h:2"), ("leaseless", "h:3"), ("dead", "h:4"), ("pending", None)]
    assert claim(control_store, "h:9", now=now) is None
    assert control_store.get(held)[HOLDER] == "h:1"
    # the old holder's renewal fails from now on: it learns that it lost the job
    assert control_store.transition(lapsed, RUNNING, {LEASE_UNTIL: now + 60}, holder="h:2") is None
    assert control_store.transition(lapsed, RUNNING, {LEASE_UNTIL: now + 60}, holder="h:9") is not None
    taken = claim(control_store, "h:9", now=now + 31)  # h:1 stopped renewing
    assert taken.body["datasetImportJobArn"] == held and taken.before[HOLDER] == "h:1"
    assert control_store.get(dead)[HOLDER] == "h:9"


def test_concurrent_claimers_in_two_processes_take_each_job_once(
        control_settings: Settings, control_store: ControlStore, processes: Processes) -> None:
    arns = {job(control_store, f"j{i:03d}") for i in range(100)}
    processes += [claimer(control_settings, "claim-all", f"p:{i}") for i in range(2)]
    for p in processes:
        assert p.stdout.readline().strip() == "ready"
    (control_settings.data_dir.parent / "go").touch()
    taken = []
    for p in processes:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0 and out.endswith("done\n"), out
        taken.append([json.loads(line) for line in out.splitlines()[:-1]])
    assert sorted(taken[0] + taken[1]) == sorted(arns), "every job taken, none twice"
    assert taken[0] and taken[1], f"both claimed: {len(taken[0])} / {len(taken[1])}"
    holders = {control_store.get(a)[HOLDER] for a in arns}
    assert holders == {"p:0", "p:1"}


def test_a_killed_claimers_job_is_taken_over_once_its_lease_lapses(
        control_settings: Settings, control_store: ControlStore, processes: Processes) -> None:
    a = job(control_store, "j")
    processes.append(dying := claimer(control_settings, "claim-one", "other-host:7", lease_s=1.5))
    assert json.loads(dying.stdout.readline()) == a
    dying.send_signal(signal.SIGKILL)
    dying.wait()
    assert claim(control_store, "here:1") is None, "its lease still holds"
    time.sleep(max(0.0, control_store.get(a)[LEASE_UNTIL] - time.time()) + 0.05)
    got = claim(control_store, "here:1")
    assert got is not None and got.before[HOLDER] == "other-host:7" and got.body[HOLDER] == "here:1"


def test_a_claimer_known_dead_is_taken_over_at_once(
        control_settings: Settings, control_store: ControlStore, processes: Processes) -> None:
    a = job(control_store, "j")
    processes.append(dying := claimer(control_settings, "claim-one", "this-host:7", lease_s=600))
    assert json.loads(dying.stdout.readline()) == a
    os.kill(dying.pid, signal.SIGKILL)
    dying.wait()
    assert claim(control_store, "this-host:8") is None
    got = claim(control_store, "this-host:8", dead=("this-host:7",))
    assert got is not None and got.before[HOLDER] == "this-host:7"


# ------------------------------------------------------------------------------ migrations

def test_processes_starting_at_once_migrate_once(control_settings: Settings, tmp_path: Path,
                                                 processes: Processes) -> None:
    processes += [claimer(control_settings, "open", f"p:{i}") for i in range(3)]
    for p in processes:
        assert p.stdout.readline().strip() == "ready"
    (tmp_path / "go").touch()
    for p in processes:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0 and out == "done\n", out
    store = open_control_store(control_settings)
    try:
        assert store.schema_version() == len(migrations_of(store))
        job(store, "kept")
    finally:
        store.close()
    again = open_control_store(control_settings)  # opening a migrated database changes nothing
    try:
        assert again.schema_version() == len(migrations_of(again))
        assert again.get(arn(JOB, "kept"))["status"] == PENDING
    finally:
        again.close()


def test_a_new_migration_is_applied_once_and_a_newer_schema_refused(
        control_settings: Settings, control_store: ControlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = job(control_store, "kept")
    known = migrations_of(control_store)
    module = sys.modules[type(control_store).__module__]
    monkeypatch.setattr(module, "MIGRATIONS", [*known, ("CREATE TABLE later (x INTEGER)",)])
    for _ in range(2):
        newer = open_control_store(control_settings)
        assert newer.schema_version() == len(known) + 1 and newer.get(kept) is not None
        newer.close()
    monkeypatch.setattr(module, "MIGRATIONS", known)  # this release again, after the newer one ran
    with pytest.raises(SchemaTooNew, match=f"schema version {len(known) + 1}, newer than this"):
        open_control_store(control_settings)


def migrations_of(store: ControlStore) -> list[tuple[str, ...]]:
    return sys.modules[type(store).__module__].MIGRATIONS


# ------------------------------------------------------------------- one backend's own rules

def test_postgres_claims_pass_over_a_job_another_claimer_holds(fresh_database: str) -> None:
    """SKIP LOCKED: a job whose row another transaction is taking is passed over, not waited
    for, so claimers never queue behind one another."""
    # waiting on the lock fails the test after 3 s, where it would hang
    store = postgres_store.PostgresStore(fresh_database + "?options=-c%20lock_timeout%3D3000")
    try:
        first, second = job(store, "a"), job(store, "b")
        with psycopg.connect(fresh_database) as other, other.transaction():
            other.execute("SELECT 1 FROM resources WHERE arn = %s FOR UPDATE", (first,))
            started = time.monotonic()
            got = claim(store)
            assert got is not None and got.body["datasetImportJobArn"] == second
            assert time.monotonic() - started < 1
        assert claim(store).body["datasetImportJobArn"] == first  # released: claimable again
    finally:
        store.close()


def test_postgres_reconnects_after_its_connection_is_cut(fresh_database: str) -> None:
    store = postgres_store.PostgresStore(fresh_database)
    try:
        a = job(store, "a")
        with psycopg.connect(fresh_database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(psycopg.OperationalError):
            store.get(a)  # the call that meets the cut fails
        assert store.get(a)["status"] == PENDING
    finally:
        store.close()


def test_a_control_db_from_before_schema_versions_is_adopted(tmp_path: Path) -> None:
    """control.db files made before migrations were counted: kept, and a job running then gets
    a lease that ends 30 s after its last heartbeat."""
    import sqlite3
    path = tmp_path / "control.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE resources (arn TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,"
               " parent TEXT, created REAL NOT NULL, body TEXT NOT NULL)")
    db.execute("CREATE TABLE access_keys (access_key_id TEXT PRIMARY KEY, secret TEXT NOT NULL,"
               " account TEXT NOT NULL, created REAL NOT NULL)")
    a = arn(JOB, "j")
    db.execute("INSERT INTO resources VALUES (?, ?, ?, NULL, 1.0, ?)",
               (a, JOB, "j", json.dumps({"status": RUNNING, "runner": "h:1", "heartbeat": 1000.5})))
    db.execute("INSERT INTO access_keys VALUES ('AKOP1', 's', '123456789012', 1.0)")
    db.commit()
    db.close()
    store = sqlite_store.ResourceStore(path)
    try:
        assert store.schema_version() == len(sqlite_store.MIGRATIONS)
        assert store.get(a)[LEASE_UNTIL] == 1030.5
        assert store.keys() == [Key("AKOP1", "s", "123456789012")]
        assert oct(path.stat().st_mode & 0o777) == oct(0o600), "access keys' secrets inside"
    finally:
        store.close()
