"""``python -m bench --quick`` is the CI smoke run of the benchmarks: it must run and report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_quick_benchmark_run_reports_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", "--only", "risk", "topups"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["figure"]: row for row in json.loads(done.stdout)["rows"]}
    assert not [f for f in rows if "FAILED" in f or "no JSON" in f], rows
    top_ups = next(r for f, r in rows.items() if f.startswith("top-ups credited/s"))
    assert top_ups["walletflow"] > 0 and top_ups["baseline"] > 0 and 0 < top_ups["ratio"]
    assert rows["top-ups credited exactly once"]["walletflow"] is True
    assert rows["risk scoring p99, all (ms)"]["walletflow"] > 0
