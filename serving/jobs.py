"""Long-running jobs (dataset imports and exports) run off the request path.

Create* stores a job as CREATE PENDING and returns at once. A `JobRunner` in every
`personalize serve` (and `personalize trainer`) process claims pending jobs from the control
store (serving/control/store.py: one claimer wins each job, across processes and, with
PostgreSQL, across hosts), runs the blocking work in a thread, writes progress into the
job's body, and ends it ACTIVE or CREATE FAILED with a failureReason. A claim is a lease of
LEASE_S that the runner renews at every heartbeat; a job whose runner died (a process of
this host that is gone at once, any other once its lease lapsed) is claimed again, and the
runner that lost it stops. The work is idempotent (a commit names its job), so a re-run
never doubles data.

A process that shuts down (SIGTERM) does not wait for its jobs: `progress` raises
JobInterrupted in the job's thread, and after at most `grace_s` the job goes back to
CREATE PENDING with a note in its progress, for the next runner on that data dir to take
up again. The work runs in a daemon thread, so a step that outlasts the grace never holds
the process (Kubernetes kills it 30 s after SIGTERM).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from serving.control.store import HOLDER, LEASE_UNTIL, Body, ControlStore, camel
from serving.work_metrics import WorkMetrics
from stream.supervision import Contact

log = logging.getLogger(__name__)
PENDING, RUNNING, ACTIVE, FAILED = "CREATE PENDING", "CREATE IN_PROGRESS", "ACTIVE", "CREATE FAILED"
STOPPING, STOPPED = "CREATE STOPPING", "CREATE STOPPED"
# the heartbeat renews the lease and publishes progress; a lease not renewed for LEASE_S has
# lapsed (hosts' clocks must agree to well within it)
HEARTBEAT_S, LEASE_S = 0.5, 30.0
Progress = Callable[..., None]  # progress(rowsDone=..., message=...): merged into the job's "progress"
Work = Callable[[Body, Progress], Body]  # blocking; returns fields to merge into the job when done


class JobFailed(Exception):
    """A failure the user can act on; its message becomes the job's failureReason."""


class JobStopped(Exception):
    """Raised from `progress` once the job was asked to stop (StopSolutionVersionCreation)."""


class JobInterrupted(Exception):
    """Raised from `progress` once this process is shutting down: the job will run again."""


TRAINING = frozenset({"solution-version", "recommender-version"})  # the kinds that take cores for minutes
DATA_SLOTS = 2  # imports, exports and deletions at once: mostly I/O, seconds each


class JobRunner:
    """Runs up to `training_slots` trainings and DATA_SLOTS data jobs at once, in separate
    pools: an import never waits behind a training, nor one dataset group's training behind
    another's."""

    def __init__(self, resources: ControlStore, work: dict[str, Work], poll_s: float = 0.5,
                 grace_s: float = 4.0, training_slots: int = 1, metrics: WorkMetrics | None = None,
                 store_contact: Contact | None = None) -> None:
        self.resources, self.work, self.poll_s, self.grace_s = resources, work, poll_s, grace_s
        self.metrics = metrics
        self.store_contact = store_contact or Contact("control store")  # each claim and heartbeat
        self.slots = {"training": training_slots, "data": DATA_SLOTS}
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Called after a job is created (or one ends), so a free slot takes the next at once."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        running: dict[asyncio.Task[None], tuple[str, str]] = {}  # -> (pool, job ARN)
        while not stop.is_set():
            for task in [t for t in running if t.done()]:
                if not task.cancelled() and task.exception() is not None:
                    log.error("%s: its runner failed: %r", running[task][1], task.exception())
                del running[task]
            busy = {pool: [p for p, _ in running.values()].count(pool) for pool in self.slots}
            free = tuple(kind for kind in self.work if busy[_pool(kind)] < self.slots[_pool(kind)])
            try:
                claimed = self._claim(free, {arn for _, arn in running.values()}) if free else None
                if free:
                    self.store_contact.answered()
            except Exception:  # noqa: BLE001 - the database away for a moment: the jobs wait
                log.warning("claiming a job failed; trying again", exc_info=True)
                claimed = None
            if claimed is not None:
                kind, job = claimed
                task = asyncio.create_task(self._run(kind, job, stop))
                task.add_done_callback(lambda _: self.wake())
                running[task] = (_pool(kind), job[f"{camel(kind)}Arn"])
                continue
            self._wake.clear()
            with_stop = asyncio.ensure_future(stop.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({with_stop, woken}, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
            with_stop.cancel()
            woken.cancel()
        if running:
            await asyncio.gather(*running)  # each ends, or is requeued, within the grace

    def _claim(self, kinds: tuple[str, ...], mine: Collection[str]) -> tuple[str, Body] | None:
        """The next job for a free slot: one whose runner is gone, else the oldest pending one;
        never one of `mine` (the ARNs this runner runs). A job of this runner's that is not one
        of them (its end could not be written) is taken again once its lease lapses."""
        now = time.time()
        dead = {runner for kind, body in self.resources.with_status(kinds, RUNNING)
                if body[f"{camel(kind)}Arn"] not in mine and self._dead(runner := body.get(HOLDER, ""))}
        got = self.resources.claim(kinds, waiting=PENDING, running=RUNNING, holder=self.owner,
                                   lease_until=now + LEASE_S, now=now, dead=dead, skip=mine)
        if got is None:
            return None
        arn = got.body[f"{camel(got.kind)}Arn"]
        if got.before["status"] == RUNNING:
            log.warning("%s: its runner %s stopped; running it again", arn, got.before.get(HOLDER))
        elif got.before.get("interruptions"):
            log.info("%s: taken up again after %d interruption(s)", arn, got.before["interruptions"])
        return got.kind, got.body

    def _dead(self, runner: str) -> bool:
        """A runner on this host whose process is gone (the server was SIGKILLed): known at
        once, without waiting out its lease."""
        host, _, pid = runner.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or runner == self.owner:
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    async def _run(self, kind: str, job: Body, shutdown: asyncio.Event) -> None:
        started, outcome = time.monotonic(), "crashed"
        if self.metrics is not None:
            self.metrics.job_started(kind)
        try:
            outcome = await self._work(kind, job, shutdown)
        finally:
            if self.metrics is not None:
                self.metrics.job_ended(kind, outcome, time.monotonic() - started)

    async def _work(self, kind: str, job: Body, shutdown: asyncio.Event) -> str:
        """Run one claimed job to its end; how it ended (work_metrics.OUTCOMES)."""
        arn = job[f"{camel(kind)}Arn"]
        done: Body = {}
        stop = {"asked": False, "lost": False}

        def progress(**fields: object) -> None:
            if shutdown.is_set() or stop["lost"]:
                raise JobInterrupted(arn)
            if stop["asked"]:
                raise JobStopped(arn)
            done.update(fields)

        task = in_daemon_thread(self.work[kind], job, progress)
        log.info("%s: started", arn)
        given_up: float | None = None
        while True:
            finished, _ = await asyncio.wait({task}, timeout=HEARTBEAT_S)
            if finished:
                break
            if shutdown.is_set():
                given_up = given_up or time.monotonic() + self.grace_s
                if time.monotonic() >= given_up:
                    break
            try:
                beat = self.resources.transition(arn, RUNNING, {LEASE_UNTIL: time.time() + LEASE_S,
                                                                "progress": dict(done)}, holder=self.owner)
                seen = (self.resources.get(arn) or {}) if beat is None else beat
                self.store_contact.answered()
            except Exception:  # noqa: BLE001 - the database away for a moment: renew at the next beat
                log.warning("%s: renewing its lease failed; trying again", arn, exc_info=True)
                continue
            stop["asked"] = seen.get("status") == STOPPING
            if seen.get("status") == RUNNING and seen.get(HOLDER) != self.owner:
                stop["lost"] = True  # its lease lapsed (this process stalled) and another took it
                log.warning("%s: %s took it over; leaving it to that runner", arn, seen.get(HOLDER))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())  # nobody awaits it
                return "taken_over"
        if not task.done() or isinstance(task.exception(), JobInterrupted):
            self._requeue(arn, job, done)
            return "interrupted"
        try:
            end, outcome, note = {"status": ACTIVE, **task.result()}, "succeeded", "done"
        except JobStopped:
            end, outcome, note = {"status": STOPPED}, "stopped", "stopped"
        except JobFailed as exc:
            end, outcome, note = {"status": FAILED, "failureReason": str(exc)}, "failed", f"failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not the runner
            log.exception("%s: crashed", arn)
            end, outcome = {"status": FAILED, "failureReason": f"internal error: {exc!r}"}, "crashed"
            note = "crashed"
        if self.resources.transition(arn, RUNNING, end, holder=self.owner) is None:  # stop asked meanwhile
            stopped = self.resources.transition(arn, STOPPING, {"status": STOPPED}, holder=self.owner)
            outcome = "stopped" if stopped is not None else "taken_over"
            note = "stopped" if stopped is not None else "taken over by another runner: its result dropped"
        log.log(logging.WARNING if outcome in ("failed", "crashed") else logging.INFO, "%s: %s", arn, note)
        return outcome

    def _requeue(self, arn: str, job: Body, done: Body) -> None:
        """Back to CREATE PENDING, saying why, for the next runner on this data dir."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        note = {**done, "message": f"interrupted by the shutdown of {self.owner} at {when}; "
                                   "the next process on this data dir takes it up again"}
        back = {"status": PENDING, HOLDER: "", LEASE_UNTIL: 0, "progress": note,
                "interruptions": job.get("interruptions", 0) + 1}
        if self.resources.transition(arn, RUNNING, back, holder=self.owner) is None:  # stop asked meanwhile
            self.resources.transition(arn, STOPPING, {"status": STOPPED}, holder=self.owner)
        log.warning("%s: interrupted by shutdown; back to %s", arn, PENDING)


def in_daemon_thread(fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """`fn(*args)` in a daemon thread, as a future of this loop: unlike the default executor,
    whose threads the interpreter joins at exit, it never keeps a stopping process alive."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def target() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (fn(*args), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop closed first: the job was requeued already
            pass

    threading.Thread(target=target, name=f"job-{getattr(fn, '__name__', 'work')}", daemon=True).start()
    return future


def _pool(kind: str) -> str:
    return "training" if kind in TRAINING else "data"
