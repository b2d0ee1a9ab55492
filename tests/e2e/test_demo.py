"""The README's first command must keep working: the demo runs on the bundled data."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import ROOT, free_port


def test_demo_streams_real_data_through_boto3_and_says_what_next(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--no-wait",
                          "--port", str(free_port()), "--data-dir", str(tmp_path), "--events", "500"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "done: 500 events" in out.stdout and "Next steps" in out.stdout
    assert "imported items.csv into the ITEMS dataset" in out.stdout
    assert "imported ml-latest-small-history.csv into the INTERACTIONS dataset" in out.stdout
    assert (tmp_path / "events.db").exists() and (tmp_path / "control.db").exists()
