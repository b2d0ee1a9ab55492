"""Long-running jobs (dataset imports and exports) run off the request path.

Create* stores a job as CREATE PENDING and returns at once. A `JobRunner` in every
`personalize serve` process claims pending jobs with an atomic status transition (so of
several processes exactly one runs a job), runs the blocking work in a thread, writes
progress into the job's body, and ends it ACTIVE or CREATE FAILED with a failureReason.
A job whose runner died (a process of this host that is gone, or no heartbeat for STALE_S)
is claimed again; the work it does is idempotent (a commit names its job), so a re-run
never doubles data.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

from serving.resources import Body, ResourceStore

log = logging.getLogger(__name__)
PENDING, RUNNING, ACTIVE, FAILED = "CREATE PENDING", "CREATE IN_PROGRESS", "ACTIVE", "CREATE FAILED"
STOPPING, STOPPED = "CREATE STOPPING", "CREATE STOPPED"
HEARTBEAT_S, STALE_S = 0.5, 30.0  # the heartbeat also publishes progress
Progress = Callable[..., None]  # progress(rowsDone=..., message=...): merged into the job's "progress"
Work = Callable[[Body, Progress], Body]  # blocking; returns fields to merge into the job when done


class JobFailed(Exception):
    """A failure the user can act on; its message becomes the job's failureReason."""


class JobStopped(Exception):
    """Raised from `progress` once the job was asked to stop (StopSolutionVersionCreation)."""


class JobRunner:
    def __init__(self, resources: ResourceStore, work: dict[str, Work], poll_s: float = 0.5) -> None:
        self.resources, self.work, self.poll_s = resources, work, poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Called after a job is created, so it starts without waiting for the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            claimed = self._claim()
            if claimed is None:
                self._wake.clear()
                with_stop = asyncio.ensure_future(stop.wait())
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({with_stop, woken}, timeout=self.poll_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                with_stop.cancel()
                woken.cancel()
                continue
            await self._run(*claimed)

    def _claim(self) -> tuple[str, Body] | None:
        kinds = tuple(self.work)
        now = time.time()
        stale = [(k, b) for k, b in self.resources.with_status(kinds, RUNNING)
                 if now - b.get("heartbeat", 0) > STALE_S or self._dead(b.get("runner", ""))]
        for kind, body in stale + self.resources.with_status(kinds, PENDING):
            arn = body[f"{_camel(kind)}Arn"]
            claim = {"status": RUNNING, "runner": self.owner, "heartbeat": now}
            got = self.resources.transition(arn, body["status"], claim)
            if got is not None:
                if body["status"] == RUNNING:
                    log.warning("%s: its runner %s stopped; running it again", arn, body.get("runner"))
                return kind, got
        return None

    def _dead(self, runner: str) -> bool:
        """A runner on this host whose process is gone (e.g. the server was SIGKILLed)."""
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

    async def _run(self, kind: str, job: Body) -> None:
        arn = job[f"{_camel(kind)}Arn"]
        done: Body = {}
        stop = {"asked": False}

        def progress(**fields: object) -> None:
            if stop["asked"]:
                raise JobStopped(arn)
            done.update(fields)

        task = asyncio.get_running_loop().run_in_executor(None, self.work[kind], job, progress)
        log.info("%s: started", arn)
        while True:
            finished, _ = await asyncio.wait({task}, timeout=HEARTBEAT_S)
            if finished:
                break
            beat = self.resources.transition(arn, RUNNING, {"heartbeat": time.time(), "progress": dict(done)})
            stop["asked"] = beat is None and (self.resources.get(arn) or {}).get("status") == STOPPING
        try:
            end, note = {"status": ACTIVE, **task.result()}, "done"
        except JobStopped:
            end, note = {"status": STOPPED}, "stopped"
        except JobFailed as exc:
            end, note = {"status": FAILED, "failureReason": str(exc)}, f"failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not the runner
            log.exception("%s: crashed", arn)
            end, note = {"status": FAILED, "failureReason": f"internal error: {exc!r}"}, "crashed"
        if self.resources.transition(arn, RUNNING, end) is None:  # asked to stop meanwhile
            self.resources.transition(arn, STOPPING, {"status": STOPPED})
            note = "stopped"
        log.info("%s: %s", arn, note)


def _camel(kind: str) -> str:
    """dataset-import-job -> datasetImportJob (the ARN member's prefix)."""
    head, *rest = kind.split("-")
    return head + "".join(w.capitalize() for w in rest)
