"""`python -m bench.ari --quick` runs and prints every figure (timings are judged by the bench
itself, never by a test)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.asterisk
def test_quick_ari_bench_reports_both_modes_side_by_side(asterisk_root) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.ari", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = {line.rsplit(None, 1)[0]: float(line.rsplit(None, 1)[1]) for line in done.stdout.splitlines()}
    assert set(figures) == {
        "daemon per real call, fastagi+ami (µs CPU/call)", "daemon per real call, stasis+ari (µs CPU/call)",
        "tracking over ARI, translate + fold (µs CPU/call)", "tracking over ARI, translate + fold (µs CPU/event)",
    }
    assert all(value > 0 for value in figures.values())
