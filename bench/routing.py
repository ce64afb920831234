"""FastAGI servers under the same load: CPU per session, latency at several concurrencies,
resident memory per idle session. The server runs pinned to one core, the generator (this
process and its children) to the other; CPU time comes from /proc/PID/stat, so a slower
generator does not change the per-session figures."""
from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from .crm_data import new_phone
from .loadgen import HeaderFactory, LoadResult, agi_header, hold_idle, paced, run_load
from .procs import GENERATOR_CORE, Server, cpu_seconds, loop_and_threads_us, rss_kib, run_time, settle, thread_run_times

PARIS_AS_DIALLED = "0184880000"
_RUN = itertools.count()  # linkedids stay unique across runs of one bench


@dataclass(frozen=True)
class Size:
    """How many sessions each measure uses (the quick bench uses few)."""

    cpu_sessions: int
    isolated_sessions: int
    level_sessions: dict[int, int]  # concurrency -> sessions
    idle_sessions: int
    open_loop_sessions: int
    ratio_rounds: int  # rounds of the interleaved ratios (bare, known caller, new caller each)
    ratio_sessions: int  # sessions of each measure in a round


FULL = Size(cpu_sessions=4000, isolated_sessions=50, level_sessions={1: 500, 50: 3000, 200: 3000, 1000: 4000}, idle_sessions=2000,
            open_loop_sessions=1500, ratio_rounds=5, ratio_sessions=2000)
QUICK = Size(cpu_sessions=300, isolated_sessions=5, level_sessions={1: 30, 50: 200, 200: 200, 1000: 1000}, idle_sessions=500,
             open_loop_sessions=300, ratio_rounds=2, ratio_sessions=100)
# The open-loop measure: calls in progress, and new calls arriving at this rate (per second)
# for this many calls. 500 calls/s is far beyond a large call centre's routing requests.
OPEN_LOOP_BACKGROUND = 200
OPEN_LOOP_RATE = 500.0
# Sessions one at a time, as calls arrive on a PBX (see one_at_a_time).
ISOLATED_RATE = 10.0


def incoming(port: int, phone: Callable[[int], str], *, offset: int = 0) -> HeaderFactory:
    """Headers of incoming calls on the Paris line from phone(offset + i), unique linkedids."""
    run = next(_RUN)
    return lambda i: agi_header(port, "incoming", extension=PARIS_AS_DIALLED, callerid=phone(offset + i),
                                args=(f"bench.{run}.{i}",))


def call_end(port: int, phone: Callable[[int], str], linkedids: Callable[[int], str]) -> HeaderFactory:
    """Headers of the hangup handler's report (route call-end): an answered incoming call."""
    t0 = f"{time.time() - 30:.3f}"
    return lambda i: agi_header(port, "call-end", extension="s", callerid=phone(i), args=(
        linkedids(i), "ok", "incoming", PARIS_AS_DIALLED, phone(i), "ANSWER", "20000", "101", t0))


def cpu_per_session(server: Server, headers: HeaderFactory, sessions: int, *, concurrency: int = 50,
                    hangup: bool = False, split: dict[str, float] | None = None) -> tuple[float, LoadResult]:
    """µs of the server's CPU per session (work done after the answer included); `split`, when
    given, receives the µs per session on the event loop and in the other threads."""
    run_load(server.port, headers, total=min(100, sessions), concurrency=10, hangup=hangup,
             cpus={GENERATOR_CORE})  # warm up on other sessions than the measured ones
    settle(server.pid)
    before, threads = cpu_seconds(server.pid), thread_run_times(server.pid)
    result = run_load(server.port, lambda i: headers(i + 100_000), total=sessions, concurrency=concurrency,
                      hangup=hangup, cpus={GENERATOR_CORE})
    settle(server.pid)
    spent = cpu_seconds(server.pid) - before
    if split is not None:
        split.update(loop_and_threads_us(server.pid, threads, sessions))
    if result.failed:
        raise RuntimeError(f"{server.name}: {result.failed} of {result.sessions} sessions failed")
    return spent / sessions * 1e6, result


def one_at_a_time(server: Server, headers: HeaderFactory, sessions: int, rate: float = ISOLATED_RATE) -> float:
    """µs of the server's CPU per session when sessions come one at a time (`rate` per second,
    as calls do on a PBX): each wakes a server that was asleep, on a core other processes used
    meanwhile. Under load the same work is shared by many sessions per wakeup, in warm caches."""
    asyncio.run(paced(server.port, lambda i: headers(i + 600_000), rate=rate, total=3, background=0,
                      background_headers=headers))  # warm up on other sessions
    settle(server.pid)
    before = run_time(server.pid)
    result = asyncio.run(paced(server.port, lambda i: headers(i + 650_000), rate=rate, total=sessions, background=0,
                               background_headers=headers))
    settle(server.pid)
    if result.failed:
        raise RuntimeError(f"{server.name}: {result.failed} of {result.sessions} paced sessions failed")
    return (run_time(server.pid) - before) / sessions * 1e6


def latency_levels(server: Server, headers: HeaderFactory, size: Size) -> dict[int, dict[str, float]]:
    """Decisions per second and latency percentiles (ms) at each concurrency."""
    levels = {}
    offset = 200_000
    for concurrency, sessions in size.level_sessions.items():
        result = run_load(server.port, lambda i, o=offset: headers(i + o), total=sessions,
                          concurrency=concurrency, processes=2 if concurrency >= 1000 else 1, cpus={GENERATOR_CORE})
        offset += sessions
        settle(server.pid)
        timings = sorted(result.latencies)
        if result.failed or not timings:
            raise RuntimeError(f"{server.name}: {result.failed} of {result.sessions} sessions failed at {concurrency}")
        levels[concurrency] = {
            "decisions_per_s": len(timings) / result.wall_seconds,
            "p50_ms": timings[len(timings) // 2] * 1e3,
            "p95_ms": timings[int(len(timings) * 0.95)] * 1e3,
            "p99_ms": timings[int(len(timings) * 0.99)] * 1e3,
        }
    return levels


def open_loop(server: Server, headers: HeaderFactory, total: int) -> dict[str, float]:
    """Latency (ms) of routing with OPEN_LOOP_BACKGROUND sessions in progress and new calls
    arriving at OPEN_LOOP_RATE: where a closed loop measures the queue the generator itself
    builds (latency = concurrency / throughput), this is the wait of one call among many."""
    settle(server.pid)
    result = asyncio.run(paced(server.port, lambda i: headers(i + 700_000), rate=OPEN_LOOP_RATE, total=total,
                               background=OPEN_LOOP_BACKGROUND, background_headers=lambda i: headers(i + 800_000)))
    timings = sorted(result.latencies)
    if result.failed or len(timings) < total:
        raise RuntimeError(f"{server.name}: {result.failed} of {result.sessions} paced sessions failed")
    return {"concurrent": OPEN_LOOP_BACKGROUND, "rate_per_s": OPEN_LOOP_RATE, "sessions": total,
            "p50_ms": timings[len(timings) // 2] * 1e3, "p95_ms": timings[int(len(timings) * 0.95)] * 1e3,
            "p99_ms": timings[int(len(timings) * 0.99)] * 1e3}


def idle_rss(server: Server, headers: HeaderFactory, sessions: int) -> float:
    """KiB of resident memory per idle session: `sessions` sessions each waiting for the reply
    to its first command."""
    settle(server.pid)
    before = rss_kib(server.pid)
    peak: list[int] = []
    asyncio.run(hold_idle(server.port, lambda i: headers(i + 900_000), sessions, lambda: peak.append(rss_kib(server.pid))))
    return (peak[0] - before) / sessions


def first_command(result: LoadResult) -> bytes:
    return result.commands[0] if result.commands else b""


NEW = new_phone
