"""A process asked to stop is gone within STOP_DEADLINE_S, whatever its clean stop waits on.

Operators expect 10 s, and Kubernetes sends SIGKILL 30 s after SIGTERM. The API, the trainer
and the stream workers try a clean stop first (requests drained, jobs back to pending,
positions committed, stores closed); where it hangs (a broker that is gone, a consumer
thread that never returns, a blocked event loop) the process leaves anyway. That loses
nothing a SIGKILL would not: an accepted event is in the log before its 200, a worker's
positions are saved with the session states and the archive dedupes, and a job whose runner
is gone is claimed again (serving/jobs.py).
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)
STOP_DEADLINE_S = 9.0  # after an API's drain (4 s) and its jobs' grace (4 s); os._exit is at once


def exit_within(seconds: float = STOP_DEADLINE_S) -> threading.Timer:
    """End the process `seconds` from now unless it ended first. A thread's timer, not the
    event loop's: what makes a stop hang is often the loop itself."""
    timer = threading.Timer(seconds, _leave, (seconds,))
    timer.daemon = True
    timer.start()
    return timer


def _leave(seconds: float) -> None:
    log.warning("still stopping %.0f s after the request to stop; leaving now", seconds)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(0)
