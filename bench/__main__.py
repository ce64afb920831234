"""`make bench` (`python -m bench`): agi-daemon against the least a FastAGI server can cost.

    python -m bench              the full run (a million contacts; about ten minutes)
    python -m bench --quick      a small run that produces every figure (the test suite runs it)
    python -m bench --reuse-db   keep the imported CRM between runs (/tmp/agi-daemon-bench)

1. The embedded CRM: an address book imported with `agi-daemon crm import` (timed), phone
   lookups timed at three sizes of the CRM.
2. Routing: the same load generator (bench/loadgen.py, the Asterisk side of FastAGI), port
   and machine for a bare asyncio responder, panoramisk's fast_agi, and `agi-daemon run` with
   the whole address book: CPU per session (known and new callers, the hangup report),
   decisions/s and latency at 1 to 1,000 concurrent sessions, memory per idle session; then
   the bare responder and the daemon round after round (`interleaved_ratios`): the ratios
   the known- and new-caller targets are judged by.
3. Call tracking over AMI: recorded events through translation and the tracker, in-process.
4. Real calls through the Asterisk sandbox: the daemon's CPU per call beside Asterisk's.
5. Queued writes drained to a Bitrix24 portal (bench/b24_drain.py) through its leaky bucket.

Prints one table (with ratios to the bare responder and the targets) and writes
bench/results.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import ari, b24_drain, crm_data, real_calls, routing, tracking  # noqa: E402
from bench.procs import GENERATOR_CORE, Profile, Server, pin, start_baseline, start_daemon  # noqa: E402
from tests.daemon_harness import write_config  # noqa: E402
from tests.asterisk.sandbox import closed_port  # noqa: E402

RESULTS = Path(__file__).with_name("results.json")
CACHE = Path("/tmp/agi-daemon-bench")


def machine() -> dict[str, object]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release(), "load_average": os.getloadavg()}


def schema_head() -> str:
    versions = ROOT / "agi_daemon" / "crm" / "migrations" / "versions"
    return max(p.name.split("_", 1)[0] for p in versions.glob("[0-9]*.py"))


def bench_config(directory: Path) -> Path:
    """The test PBX (tests/daemon_harness.py) with room for thousands of sessions, AMI on a
    closed port (tracking is measured apart), the CRM in `directory`."""
    config = write_config(directory, ami=(closed_port(), "agi-daemon", "unused"))
    text = config.read_text().replace('allowed_peers: ["127.0.0.1"]}', 'allowed_peers: ["127.0.0.1"], max_sessions: 5000}')
    config.write_text(text)
    return config


def build_crm(work: Path, contacts: int, reuse: bool) -> tuple[Path, float, bool]:
    """The CRM with `contacts` contacts (work/crm.sqlite3) and the import's seconds."""
    cached = CACHE / f"schema-{schema_head()}-{contacts}.sqlite3"
    timing = cached.with_suffix(".json")
    if reuse and cached.exists() and timing.exists():
        shutil.copy(cached, work / "crm.sqlite3")
        return work / "crm.sqlite3", json.loads(timing.read_text())["import_s"], True
    csv = work / "contacts.csv"
    crm_data.write_csv(csv, contacts)
    seconds = crm_data.import_contacts(bench_config(work), csv, work)
    csv.unlink()
    os.sync()  # the import's writes reach the disk now, not while the servers are measured
    if reuse:
        CACHE.mkdir(exist_ok=True)
        shutil.copy(work / "crm.sqlite3", cached)
        timing.write_text(json.dumps({"import_s": seconds}))
    return work / "crm.sqlite3", seconds, False


def crm_figures(work: Path, sizes: list[int], lookups: int, reuse: bool) -> tuple[dict, Path]:
    figures: dict[str, object] = {"lookup": {}}
    database = None
    for contacts in sizes:
        directory = work / f"crm-{contacts}"
        directory.mkdir()
        database, seconds, cached = build_crm(directory, contacts, reuse and contacts == sizes[-1])
        figures["lookup"][contacts] = crm_data.run_lookups(database, contacts, lookups)
        print(f"  {contacts:>9,} contacts: import {seconds:6.1f} s{' (cached)' if cached else ''}, "
              f"lookup p50 {figures['lookup'][contacts]['p50']:.0f} µs p99 {figures['lookup'][contacts]['p99']:.0f} µs",
              flush=True)
        figures["import_s"] = {"contacts": contacts, "seconds": seconds, "cached": cached}
    assert database is not None
    return figures, database


def server_figures(server: Server, headers, size: routing.Size, extra=None) -> dict:
    # first, on a heap not yet grown by the load; the callers of the warm-up again, so that
    # what grows is the sessions' memory, not the CRM's page cache
    idle = routing.idle_rss(server, lambda i: headers(i % 100), size.idle_sessions)
    cpu, result = routing.cpu_per_session(server, headers, size.cpu_sessions)
    figures = {"cpu_us": cpu, "one_at_a_time_cpu_us": routing.one_at_a_time(server, headers, size.isolated_sessions),
               "levels": routing.latency_levels(server, headers, size), "idle_rss_kib": idle,
               "open_loop": routing.open_loop(server, headers, size.open_loop_sessions),
               "first_command": routing.first_command(result).decode(errors="replace")}
    print(f"  {server.name}: {cpu:.0f} µs CPU/session, {figures['idle_rss_kib']:.1f} KiB/idle session", flush=True)
    return figures


def routing_figures(work: Path, database: Path, contacts: int, size: routing.Size) -> dict:
    out: dict[str, object] = {}
    known = lambda i: crm_data.known_phone(i % contacts)  # noqa: E731
    for kind in ("bare", "panoramisk"):
        server = start_baseline(kind, work)
        try:
            out[kind] = server_figures(server, routing.incoming(server.port, known), size)
        finally:
            server.stop()
    directory = database.parent
    config = bench_config(directory)
    server = start_daemon(config, directory)
    try:
        with Profile("known-callers", server.pid):
            figures = server_figures(server, routing.incoming(server.port, known), size)
        if "AGI_DAEMON_RESPONSIBLE" not in figures["first_command"]:
            raise RuntimeError(f"a known caller was not routed to the responsible: {figures['first_command']}")
        new_headers = routing.incoming(server.port, routing.NEW)
        new_split: dict[str, float] = {}
        report_split: dict[str, float] = {}
        with Profile("new-callers", server.pid):
            new_cpu, result = routing.cpu_per_session(server, new_headers, size.cpu_sessions, split=new_split)
        linkedid = lambda i: f"bench.call-end.{i}"  # noqa: E731
        with Profile("hangup-reports", server.pid):
            report_cpu, _ = routing.cpu_per_session(
                server, routing.call_end(server.port, routing.NEW, linkedid), size.cpu_sessions, hangup=True,
                split=report_split)
        figures.update(new_caller_cpu_us=new_cpu, hangup_report_cpu_us=report_cpu,
                       new_caller_split_us=new_split, hangup_report_split_us=report_split,
                       new_first_command=routing.first_command(result).decode(errors="replace"))
        print(f"  agi-daemon new caller: {new_cpu:.0f} µs, hangup report: {report_cpu:.0f} µs CPU/session", flush=True)
        bare = start_baseline("bare", work)
        try:
            out["ratios"] = interleaved_ratios(bare, server, contacts, size)
        finally:
            bare.stop()
        lines = server.log.read_text().splitlines()
        figures["log_errors"] = sum(" ERROR " in line for line in lines)
        figures["late_lookups"] = sum("CRM lookup over" in line for line in lines)
        figures["log_lines"] = len(lines)
        out["daemon"] = figures
    finally:
        server.stop()
    return out


def interleaved_ratios(bare: Server, daemon: Server, contacts: int, size: routing.Size) -> dict:
    """The daemon's CPU per known and per new caller over the bare responder's, round after
    round, both servers running on the same core: the figure the targets are judged by. The
    figures above measure each server once, minutes apart, and this machine's speed moves in
    minutes (the bare responder read 113 µs in one run and 150 µs in the next); a round
    measures all three within seconds. The median of the rounds' ratios is the figure."""
    known = lambda i: crm_data.known_phone(i % contacts)  # noqa: E731
    rounds = []
    for number in range(size.ratio_rounds):
        first_new = (number + 1) * 1_000_000  # numbers no contact has, and no round called before
        bare_us = _cpu_us(bare, routing.incoming(bare.port, known), size.ratio_sessions)
        known_us = _cpu_us(daemon, routing.incoming(daemon.port, known), size.ratio_sessions)
        new_us = _cpu_us(daemon, routing.incoming(daemon.port, lambda i, first=first_new: routing.NEW(first + i)),
                         size.ratio_sessions)
        rounds.append({"bare_us": bare_us, "known_us": known_us, "new_us": new_us})
        print(f"  round {number + 1}: bare {bare_us:.0f} µs, known caller {known_us / bare_us:.2f}x, "
              f"new caller {new_us / bare_us:.2f}x", flush=True)
    known_ratios = [r["known_us"] / r["bare_us"] for r in rounds]
    new_ratios = [r["new_us"] / r["bare_us"] for r in rounds]
    return {"rounds": rounds, "known_ratio": statistics.median(known_ratios), "new_ratio": statistics.median(new_ratios),
            "known_ratio_range": [min(known_ratios), max(known_ratios)],
            "new_ratio_range": [min(new_ratios), max(new_ratios)]}


def _cpu_us(server: Server, headers, sessions: int) -> float:
    """µs of CPU per session, from each thread's run time in nanoseconds (schedstat): a round's
    measure is short, and /proc/PID/stat counts in 10 ms ticks."""
    split: dict[str, float] = {}
    routing.cpu_per_session(server, headers, sessions, split=split)
    return split["event_loop_us"] + split["other_threads_us"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a small run producing every figure")
    parser.add_argument("--reuse-db", action="store_true", help="reuse the imported CRM from an earlier run")
    parser.add_argument("--no-asterisk", action="store_true", help="leave out the real calls")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record py-spy profiles of agi-daemon in DIR (pip install -e '.[bench]')")
    args = parser.parse_args(argv)
    Profile.directory = args.profile
    pin(os.getpid(), GENERATOR_CORE)
    sizes = [1_000, 5_000, 20_000] if args.quick else [10_000, 100_000, 1_000_000]
    size = routing.QUICK if args.quick else routing.FULL
    started = time.monotonic()
    results: dict[str, object] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
                                  "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="agi-daemon-bench-") as tmp:
        work = Path(tmp)
        print("embedded CRM", flush=True)
        results["crm"], database = crm_figures(work, sizes, 400 if args.quick else 5000, args.reuse_db)
        print(f"routing ({sizes[-1]:,} contacts)", flush=True)
        results["routing"] = routing_figures(work, database, sizes[-1], size)
    print("call tracking", flush=True)
    rules = tracking.bench_rules()
    rounds = 20 if args.quick else 200
    results["tracking"] = {**tracking.tracking(rules, rounds),
                           "tracking with 1,000 calls in progress (µs CPU/event)": tracking.tracking_busy(rules, 1000, rounds // 2),
                           **tracking.ami_codec(rounds)}
    print("real calls", flush=True)
    # quick: calls held, and the daemon watched idle, only as long as every figure needs
    results["real_calls"] = (real_calls.measure(3, hold=0.5, idle=1.0, skip=args.no_asterisk) if args.quick
                             else real_calls.measure(40, skip=args.no_asterisk))
    print("FastAGI+AMI beside Stasis+ARI", flush=True)
    results["ari"] = {} if args.no_asterisk else ari.measure(calls=4 if args.quick else 40, rounds=2 if args.quick else 200)
    print("Bitrix24 drain", flush=True)
    results["bitrix24_drain"] = asyncio.run(b24_drain.drain(2_000 if args.quick else 10_000, scale=25 if args.quick else 10))
    results["seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = os.getloadavg()  # type: ignore[index]
    from bench.table import render

    table = render(results)
    print(table)
    results["table"] = table.splitlines()
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
