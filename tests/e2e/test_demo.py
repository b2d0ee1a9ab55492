"""The README's first command must keep telling its story on the bundled data: import, stream
events, train HRNN, deploy, recommend, click, and see the recommendations change."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import ROOT, free_port


def test_demo_trains_deploys_and_shows_the_top_10_change_after_clicks(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--no-wait",
                          "--port", str(free_port()), "--data-dir", str(tmp_path), "--events", "500",
                          "--epochs", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    story = out.stdout
    for line in ("imported items.csv into the ITEMS dataset",
                 "imported ml-latest-small-history.csv into the INTERACTIONS dataset",
                 "done: 500 events", "ACTIVE", "NDCG@10", "user 1's top 10",
                 "click: ", "the top 10 changed", "Next steps"):
        assert line in story, f"{line!r} missing from:\n{story}"
    assert story.count("  new") >= 1  # what the clicks brought in is marked
    assert "median release year of the top 10" in story
