"""A stop that hangs does not hold the process: it leaves at the deadline, exit status 0."""
from __future__ import annotations

import subprocess
import sys
import time

from support import ROOT

HANGS = """
import time
from stream.shutdown import exit_within
exit_within(0.5)
time.sleep(60)  # the main thread stuck, as in a stop that waits on a broker that is gone
"""


def test_a_process_whose_stop_hangs_leaves_at_the_deadline() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", HANGS], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 10
    assert "leaving now" in done.stderr
