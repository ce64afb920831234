"""`make bench`: the daemon's CPU cost per call, next to the ~5.8 ms of CPU Asterisk spends on the same call.

1. routing: a real `agi-daemon run` process answers FastAGI sessions from a load client on
   loopback; its CPU time per session is read from /proc/PID/stat (the client is slower than
   the server, so wall-clock rates would measure the client). Known callers (lookup only) and
   new callers (lookup, then a lead created) are measured apart.
2. tracking: the recorded AMI events of real calls (tests/fixtures/ami) replayed through the
   edge translation and the tracker fold, in-process: from an idle tracker, and on top of
   1,000 calls in progress (hand-built answered calls), since a busy call centre must not make
   each event dearer.
3. AMI codec: parsing a recorded call's events from raw bytes.

Each figure is printed with its baseline from bench/baseline.json and the ratio; a ratio over
2.0 is flagged as a regression (the run exits 1).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agi_daemon.asterisk.ami import AmiParser, AmiResync  # noqa: E402
from agi_daemon.asterisk.ami.translate import translate  # noqa: E402
from agi_daemon.core.model import Direction, Rules  # noqa: E402
from agi_daemon.core.tracker import (  # noqa: E402
    BridgeEntered,
    Channel,
    ChannelCreated,
    DialEnded,
    DialStarted,
    TrackerState,
    step,
)
from agi_daemon.crm.embedded import EmbeddedCrm  # noqa: E402
from agi_daemon.settings import load_settings  # noqa: E402
from tests.daemon_harness import agi_call, write_config  # noqa: E402
from tests.fixtures import ami_fixture_names, ami_items  # noqa: E402

BASELINE = Path(__file__).with_name("baseline.json")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def routing(sessions: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), ami=(1, "agi-daemon", "unused"))
        settings = load_settings(config)
        async with EmbeddedCrm(settings.crm.embedded.database) as crm:
            for n in range(sessions):
                await crm.add_record("contact", f"Client {n}", f"+3361{n:07d}", "bob")
        log = Path(tmp) / "daemon.log"
        with log.open("w") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agi_daemon", "run", "-c", str(config), stderr=log_file, cwd=tmp)
        try:
            port = await _port_of(log)
            results = {}
            for label, prefix in (("known caller", "+3361"), ("new caller", "+3362")):
                await _sessions(port, prefix, 20, label)  # warm up
                before = cpu_seconds(process.pid)
                await _sessions(port, prefix, sessions, label)
                await asyncio.sleep(0.5)  # the leads created after the answer count too
                results[f"routing, {label} (µs CPU/session)"] = (cpu_seconds(process.pid) - before) / sessions * 1e6
            return results
        finally:
            process.terminate()
            await process.wait()


async def _port_of(log: Path) -> int:
    """The port the daemon (listening on 127.0.0.1:0) chose, from its log."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if found := re.search(r"FastAGI listening on 127\.0\.0\.1:(\d+)", log.read_text()):
            return int(found[1])
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the daemon did not start listening:\n{log.read_text()}")


async def _sessions(port: int, prefix: str, count: int, label: str) -> None:
    for n in range(count):
        caller = f"{prefix}{n:07d}"
        answer = await agi_call(port, "incoming", extension="0184880000", callerid=caller, args=(f"bench-{label}-{n}-{time.time_ns()}",))
        if answer.get("AGI_DAEMON_STATUS") != "ok":
            raise RuntimeError(f"routing answered {answer}")


def bench_rules() -> Rules:
    with tempfile.TemporaryDirectory() as tmp:
        return load_settings(write_config(Path(tmp), ami=(1, "agi-daemon", "unused"))).rules


def tracking(rules: Rules, rounds: int) -> dict[str, float]:
    calls = [ami_items(name) for name in ami_fixture_names()]
    events = sum(len(items) for items in calls)
    started = time.process_time()
    for _ in range(rounds):
        for items in calls:
            state = TrackerState()
            for item in items:
                event = translate(item)
                if event is not None:
                    state, _ = step(rules, state, event)
    spent = time.process_time() - started
    return {
        "tracking, translate + fold (µs CPU/call)": spent / (rounds * len(calls)) * 1e6,
        "tracking, translate + fold (µs CPU/event)": spent / (rounds * events) * 1e6,
    }


def calls_in_progress(rules: Rules, count: int) -> TrackerState:
    """A tracker following `count` answered incoming calls on the Paris line, from hand-built
    events: each a client's channel in agi-daemon-incoming dialling alice's Local channel, both
    in the call's bridge."""
    at = datetime(2025, 1, 1, 9, 0, tzinfo=timezone.utc)
    state = TrackerState()
    for n in range(count):
        linkedid = f"busy-{n}"
        client = Channel(linkedid, f"PJSIP/trunk-{n:08x}", linkedid, "agi-daemon-incoming", "0184880000",
                         f"+3361{n:07d}", Direction.INCOMING)
        agent = Channel(f"{linkedid}.1", f"Local/101@employees-{n:08x};1", linkedid, "employees", "101")
        for event in (ChannelCreated(client, at), ChannelCreated(agent, at),
                      DialStarted(client, agent, "101@employees", at), DialEnded(client, agent, "ANSWER", at),
                      BridgeEntered(client, f"bridge-{n}", at), BridgeEntered(agent, f"bridge-{n}", at)):
            state, _ = step(rules, state, event)
    assert len(state.calls) == count
    return state


def tracking_busy(rules: Rules, count: int, rounds: int) -> float:
    """µs CPU per event of the recorded calls replayed (translate + fold, as `tracking`) on
    top of `count` calls in progress: each recorded call starts from that same busy state.
    Calls recorded across a resync are left out: a resync lists every live channel, so it is
    a reconnection's cost (the snapshot would end the hand-built calls), not an event's."""
    busy = calls_in_progress(rules, count)
    calls = [items for items in map(ami_items, ami_fixture_names())
             if not any(isinstance(item, AmiResync) for item in items)]
    events = sum(len(items) for items in calls)
    started = time.process_time()
    for _ in range(rounds):
        for items in calls:
            state = busy
            for item in items:
                event = translate(item)
                if event is not None:
                    state, _ = step(rules, state, event)
            assert len(state.calls) == count  # the recorded call has ended, the others go on
    return (time.process_time() - started) / (rounds * events) * 1e6


def ami_codec(rounds: int) -> dict[str, float]:
    items = [i for name in ami_fixture_names() for i in ami_items(name) if hasattr(i, "fields")]
    wire = b"".join(
        "".join(f"{k}: {v}\r\n" for k, v in {"Event": i.name, **dict(i.fields)}.items()).encode() + b"\r\n"
        for i in items)
    started = time.process_time()
    for _ in range(rounds):
        parser = AmiParser()
        parser.feed(b"Asterisk Call Manager/9.0.0\r\n")
        parser.feed(wire)
    spent = time.process_time() - started
    return {"AMI codec, parse (µs CPU/event)": spent / (rounds * len(items)) * 1e6}


def main() -> int:
    results: dict[str, float] = {}
    results.update(asyncio.run(routing(300)))
    rules = bench_rules()
    results.update(tracking(rules, 200))
    results["tracking with 1,000 calls in progress (µs CPU/event)"] = tracking_busy(rules, 1000, 100)
    results.update(ami_codec(200))
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    regressions = 0
    width = max(map(len, results))
    print(f"{'measure':{width}} {'now':>10} {'baseline':>10} {'ratio':>7}")
    for name, value in results.items():
        base = baseline.get(name)
        ratio = value / base if base else None
        flag = "  REGRESSION" if ratio and ratio > 2.0 else ""
        regressions += bool(flag)
        print(f"{name:{width}} {value:10.1f} {base if base else float('nan'):10.1f} {ratio if ratio else float('nan'):7.2f}{flag}")
    if "--save" in sys.argv:
        BASELINE.write_text(json.dumps({k: round(v, 1) for k, v in results.items()}, indent=2) + "\n")
        print(f"baseline saved to {BASELINE}")
    return 1 if regressions else 0


if __name__ == "__main__":
    raise SystemExit(main())
