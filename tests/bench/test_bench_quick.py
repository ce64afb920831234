"""The quick benchmark runs and produces every figure the full one reports (no timing is
asserted here: speed and memory are judged by `make bench`)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.asterisk
def test_quick_bench_reports_every_figure(tmp_path: Path, asterisk_root) -> None:
    output = tmp_path / "results.json"

    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(output.read_text())
    assert set(results["crm"]["lookup"]) == {"1000", "5000", "20000"}
    assert all(f["p50"] > 0 and f["p99"] >= f["p50"] for f in results["crm"]["lookup"].values())
    assert results["crm"]["import_s"]["contacts"] == 20000 and results["crm"]["import_s"]["seconds"] > 0
    routing = results["routing"]
    for server in ("bare", "panoramisk", "daemon"):
        figures = routing[server]
        assert figures["cpu_us"] > 0 and figures["idle_rss_kib"] > 0
        assert set(figures["levels"]) == {"1", "50", "200", "1000"}
        assert all(level["decisions_per_s"] > 0 and 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"]
                   for level in figures["levels"].values())
        assert figures["open_loop"]["p99_ms"] > 0
        assert figures["one_at_a_time_cpu_us"] > 0
    daemon = routing["daemon"]
    assert daemon["new_caller_cpu_us"] > 0 and daemon["hangup_report_cpu_us"] > 0
    ratios = routing["ratios"]  # the targets' figure: the bare responder and the daemon, round after round
    assert len(ratios["rounds"]) == 2 and all(min(r.values()) > 0 for r in ratios["rounds"])
    for kind in ("known", "new"):
        low, high = ratios[f"{kind}_ratio_range"]
        assert 0 < low <= ratios[f"{kind}_ratio"] <= high
        assert f"{kind} caller / bare, median of 2 interleaved rounds" in "\n".join(results["table"])
    assert "AGI_DAEMON_RESPONSIBLE" in daemon["first_command"] and daemon["log_errors"] == 0
    assert "AGI_DAEMON_QUEUE" in daemon["new_first_command"]
    assert {"tracking, translate + fold (µs CPU/call)", "tracking, translate + fold (µs CPU/event)",
            "tracking with 1,000 calls in progress (µs CPU/event)", "AMI codec, parse (µs CPU/event)"} <= set(results["tracking"])
    drain = results["bitrix24_drain"]
    assert drain["written"] == drain["writes"] == 2000 and drain["query_limit_exceeded"] == 0
    real = results["real_calls"]
    assert real["logged"] == real["calls"] and real["daemon_ms_per_call"] > 0 and real["asterisk_ms_per_call"] > 0
    assert real["context_switches_per_call"] > 0 and real["event_loop_ms_per_call"] > 0
    assert {"bare_ms_per_call", "daemon_idle_ms_per_s", "other_threads_ms_per_call"} <= set(real)
    table = "\n".join(results["table"])
    for figure in ("CPU/session, agi-daemon known caller", "lookup p99, 20,000 contacts", "RSS/idle session, agi-daemon",
                   "real call, agi-daemon", "crm import", "of which on the event loop",
                   "real call, bare responder as the FastAGI server", "one at a time", "Bitrix24 drain",
                   "daemon per real call, stasis+ari", "tracking over ARI"):
        assert figure in table
