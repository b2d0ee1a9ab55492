"""A batch job's files: its input on this disk, its output written a chunk at a time with
checkpoints, and the output delivered where the job said, once whole.

Batch inference and batch segment jobs share it: each reads JSON lines from
`jobInput.s3DataSource.path` (a file of the allowed roots or an s3:// object) and writes
`<jobOutput path>/<input name>.out`, one answer per line in the input's order. A chunk of
lines at a time, so memory stays bounded whatever the input's size; every CHECKPOINT_S the
output is flushed and the job's progress says how far it got (lines done, input and output
bytes), so a job taken up again after a crash or a restart goes on from there.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from kernel.locations import LocationRefused, Locations, S3Location, confined
from kernel.s3_files import S3Error, S3Files
from kernel.settings import Settings
from serving.control.store import Body
from serving.jobs import JobFailed, Progress

log = logging.getLogger(__name__)
CHUNK_LINES = 1000  # lines answered at a time: the job's memory is a chunk's
CHECKPOINT_S = 1.0  # at most this much work is done again after a crash


class Answerer(Protocol):
    """What answers a job's lines: each line parsed, then a chunk of them answered at once."""

    def parse(self, text: bytes) -> Any: ...

    def answer(self, lines: Sequence[Any]) -> tuple[list[bytes], int]: ...  # output lines, errors


def run_lines(settings: Settings, job: Body, arn: str, answerer: Answerer, progress: Progress) -> Body:
    """Answer the input of the job `arn` into its output; the job's final progress."""
    job_id = "batch-" + hashlib.sha256(arn.encode()).hexdigest()[:20]  # jobs of every account share the spool
    files = BatchFiles(settings, job, job_id)
    files.partial.touch()
    with files.input() as source, open(files.partial, "r+b") as out:
        done = _resume(job.get("progress") or {}, source, out)
        total = _lines(source)
        with open(source, "rb") as lines:
            lines.seek(done["inputBytes"])
            done = _answer(answerer, lines, out, done, total, progress)
    files.deliver()
    summary = f"{done['linesDone']:,} lines answered, {done['linesFailed']:,} of them with an error"
    if done["linesFailed"]:
        log.warning("%s: %s", arn, summary)
    return {"progress": {**done, "message": summary}}


def _resume(checkpoint: Body, source: Path, out: BinaryIO) -> Body:
    """Where the job goes on from: its last checkpoint, where the partial output still holds
    all it wrote by then (on this host), else the start. Output beyond it is written again."""
    start = {"linesDone": 0, "linesFailed": 0, "inputBytes": 0, "outputBytes": 0}
    at = {k: int(checkpoint.get(k, 0)) for k in start}
    out.seek(0, os.SEEK_END)
    if not at["linesDone"] or out.tell() < at["outputBytes"] or source.stat().st_size < at["inputBytes"]:
        at = start
    else:
        log.info("going on from line %d, its last checkpoint", at["linesDone"])
    out.truncate(at["outputBytes"])
    out.seek(at["outputBytes"])
    return at


def _lines(source: Path) -> int:
    """How many lines the input has (a last one without a newline counts)."""
    count, last = 0, b"\n"
    with open(source, "rb") as f:
        while block := f.read(1 << 20):
            count, last = count + block.count(b"\n"), block[-1:]
    return count + (last != b"\n")


def _answer(answerer: Answerer, lines: BinaryIO, out: BinaryIO, done: Body, total: int,
            progress: Progress) -> Body:
    """Answer the input from `lines`' position on, a chunk at a time, checkpointing as it goes."""
    saved = time.monotonic()
    while chunk := [raw for raw in (lines.readline() for _ in range(CHUNK_LINES)) if raw]:
        parsed = [answerer.parse(raw.rstrip(b"\r\n")) for raw in chunk if raw.strip()]
        answers, failed = answerer.answer(parsed)
        out.write(b"\n".join(answers) + b"\n" if answers else b"")
        done = {"linesDone": done["linesDone"] + len(parsed), "linesFailed": done["linesFailed"] + failed,
                "inputBytes": lines.tell(), "outputBytes": out.tell()}
        if time.monotonic() - saved >= CHECKPOINT_S:
            out.flush()
            os.fsync(out.fileno())
            progress(**done, message=f"{done['linesDone']:,} of {total:,} lines")
            saved = time.monotonic()
    out.flush()
    os.fsync(out.fileno())
    return done


class BatchFiles:
    """The job's input on this disk, its partial output in the spool (a name of the job's, so a
    restart finds it), and where the output goes when it is whole."""

    def __init__(self, settings: Settings, job: Body, job_id: str) -> None:
        self.locations: Locations = settings.locations
        self.s3 = S3Files(settings.s3_endpoint_url)
        self.spool = settings.data_dir / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.source_location = job["jobInput"]["s3DataSource"]["path"]
        self.destination = job["jobOutput"]["s3DataDestination"]["path"]
        self.partial = self.spool / f"{job_id}.out"
        self.fetched = self.spool / f"{job_id}.in"
        self.name = self.source_location.rstrip("/").rsplit("/", 1)[-1] + ".out"

    def _where(self, member: str, location: str) -> Path | S3Location:
        try:
            return self.locations.check(location)
        except LocationRefused as exc:
            raise JobFailed(f"{member}: {exc}") from None

    @contextlib.contextmanager
    def input(self) -> Iterator[Path]:
        where = self._where("jobInput.s3DataSource.path", self.source_location)
        if isinstance(where, S3Location):
            try:
                yield self.s3.fetch(where, self.fetched)
            except S3Error as exc:
                raise JobFailed(f"jobInput.s3DataSource.path {exc}") from None
            finally:
                self.fetched.unlink(missing_ok=True)
            return
        if not where.is_file():
            raise JobFailed(f"jobInput.s3DataSource.path {self.source_location!r}: no such file")
        yield where

    def deliver(self) -> None:
        """The whole output to `<destination>/<input name>.out`, replacing one a rerun left."""
        where = self._where("jobOutput.s3DataDestination.path", self.destination)
        if isinstance(where, S3Location):
            try:
                self.s3.upload(self.partial, where.child(self.name))
            except S3Error as exc:
                raise JobFailed(f"jobOutput.s3DataDestination.path {exc}") from None
            self.partial.unlink()
            return
        where.mkdir(parents=True, exist_ok=True)
        final = confined(where / self.name, self.locations.roots)
        staged = final.with_name(f".{final.name}.partial")
        shutil.move(self.partial, staged)
        os.replace(staged, final)
