"""How `personalize serve` runs: one uvicorn server, or `--workers N` processes under a small
supervisor that replaces one that dies (distributed mode; each process builds its own app)."""
from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel.settings import Settings
from serving import log_format
from stream.shutdown import STOP_DEADLINE_S, exit_within

if TYPE_CHECKING:
    import socket
    from types import FrameType

    import uvicorn
    from fastapi import FastAPI

# builds one process's app from the settings (serving.cli.api_app: the composition root's, a
# module-level function, so a spawned process gets it by name)
AppFactory = Callable[[Settings], "FastAPI"]
STARTUP_FAILURE = 3  # uvicorn's exit status when the app does not start (e.g. Redis unreachable)
SHUTDOWN_DRAIN_S = 4.0  # + the jobs' grace (serving/jobs.py, 4 s) + closing: under STOP_DEADLINE_S


def configure_logging(settings: Settings) -> None:
    log_format.configure(settings.log_level, settings.log_format)


def server(settings: Settings, app: AppFactory) -> uvicorn.Server:
    """uvicorn with httptools, plus the limits it lacks (serving/limits.py: slow or oversized
    request heads and bodies), and at most `max_connections` connections or requests in
    progress (503 beyond: a process out of file descriptors would refuse them less politely).
    Idle keep-alive connections close after uvicorn's 5 s. On SIGTERM, requests in flight get
    SHUTDOWN_DRAIN_S before the jobs and agents stop, so the process ends within 10 s; where
    closing hangs (a broker that is gone), it leaves at STOP_DEADLINE_S anyway."""
    import uvicorn

    from serving.limits import slow_clients

    class BoundedStop(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit:
                exit_within(STOP_DEADLINE_S)
            super().handle_exit(sig, frame)

    return BoundedStop(uvicorn.Config(
        functools.partial(app, settings), factory=True, host=settings.host, port=settings.port,
        log_level=settings.log_level, loop="uvloop", access_log=False,  # ours: OPZ_ACCESS_LOG
        # JSON: uvicorn's loggers propagate to our handler instead of its own text ones
        **({"log_config": None} if settings.log_format == "json" else {}),
        http=slow_clients(settings.read_timeout_s, settings.max_header_bytes),
        limit_concurrency=settings.max_connections, timeout_graceful_shutdown=SHUTDOWN_DRAIN_S))


def api_worker(settings: Settings, app: AppFactory) -> None:
    """One of `serve --workers N`'s processes. Each listens on a socket of its own (SO_REUSEPORT),
    so the kernel spreads new connections evenly over them; with one shared socket (uvicorn's
    --workers) the process that wakes first accepts a whole burst, and 32 keep-alive
    connections often all went to one of two processes."""
    sock = _bound(settings, reuse_port=True)
    if sock is None:
        sys.exit(STARTUP_FAILURE)
    one = server(settings, app)
    one.run(sockets=[sock])
    sys.exit(0 if one.started else STARTUP_FAILURE)


def _bound(settings: Settings, *, reuse_port: bool) -> socket.socket | None:
    """A socket bound to the API's address; None (logged) where that is taken."""
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        logging.getLogger(__name__).error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        sock.close()
        return None
    return sock


def run_workers(settings: Settings, app: AppFactory) -> int:
    """Start `settings.workers` API processes, start another in place of one that dies, and stop
    them all on SIGTERM or SIGINT. One that cannot start (port taken, Redis unreachable) stops
    the lot: the others would fail alike."""
    import multiprocessing
    import signal
    import threading

    log = logging.getLogger(__name__)
    probe = _bound(settings, reuse_port=False)  # the port is free, not held by another server's
    if probe is None:                           # SO_REUSEPORT sockets, which ours would join
        return STARTUP_FAILURE
    probe.close()
    # each process counts into files here and /metrics sums them all (serving/metrics.py
    # `scraped`); prometheus_client reads the variable when a (spawned) process imports it
    counts = tempfile.mkdtemp(prefix="opz-api-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = counts
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no state forked from here
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def start() -> multiprocessing.process.BaseProcess:
        process = spawn.Process(target=api_worker, args=(settings, app), name="opz-api")
        process.start()
        return process

    processes = [start() for _ in range(settings.workers)]
    log.info("%d API processes on %s:%s: %s", settings.workers, settings.host, settings.port,
             [p.pid for p in processes])
    status = 0
    try:
        while not stop.wait(0.5):
            for i, process in enumerate(processes):
                if process.is_alive():
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    log.error("API process %s could not start; stopping", process.pid)
                    status = STARTUP_FAILURE
                    stop.set()
                    break
                processes[i] = start()
                log.warning("API process %s exited (%s); started %s", process.pid, process.exitcode,
                            processes[i].pid)
    finally:
        for process in processes:
            process.terminate()  # SIGTERM: uvicorn finishes what it is answering, then stops
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
        shutil.rmtree(counts, ignore_errors=True)
    return status
