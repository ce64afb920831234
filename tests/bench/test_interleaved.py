"""bench/interleaved.py runs both versions round after round and prints their figures (the
figures themselves are not judged here)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_both_versions_are_measured_in_each_round(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.interleaved", "--base", str(ROOT), "--rounds", "2",
                           "--sessions", "300", "--contacts", "2000", "--warm-up", "100"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = re.findall(r"^\s+(\d) (base|this)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", done.stdout, re.M)
    assert [(number, name) for number, name, *_ in rows] == [("1", "base"), ("1", "this"), ("2", "base"), ("2", "this")]
    # /proc counts CPU in 10 ms ticks: 300 sessions read to 33 µs, a session costs several times that
    assert all(int(value) > 0 for *_, known, known_loop, new, new_loop in rows
               for value in (known, known_loop, new, new_loop))


def test_a_base_without_the_package_is_refused_with_its_path(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.interleaved", "--base", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert done.returncode == 2 and f"{tmp_path} holds no agi_daemon package" in done.stderr
