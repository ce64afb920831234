"""Queued writes drained to a Bitrix24 portal through its 2/s, burst-50 leaky bucket.

    python -m bench.b24_drain [--writes 10000] [--scale 10] [--per-second 2] [--burst 50]

The in-test portal (tests/crm/bitrix24_portal.py) enforces the bucket and answers 503
QUERY_LIMIT_EXCEEDED like a real one; the client coalesces the writes (crm.lead.add, each
with its ORIGIN_ID) into `batch` requests of 50 and paces them with its own bucket. Both
buckets start full (another application has just used the whole burst), so the figure is the
steady state: the ceiling is per_second x 50 commands = 100 writes/s on the common plans.

To keep the run short, the portal's clock and the client's bucket run `scale` times faster
than real time; rates are given in portal seconds (HTTP and parsing costs are scaled up with
it, so the figure errs on the low side). Target: >= 90 writes/s, zero QUERY_LIMIT_EXCEEDED.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agi_daemon.crm.bitrix24.auth import WebhookAuth  # noqa: E402
from agi_daemon.crm.bitrix24.bucket import LeakyBucket  # noqa: E402
from agi_daemon.crm.bitrix24.client import Bitrix24Client, Command  # noqa: E402
from tests.crm.bitrix24_portal import Bitrix24Portal, ScaledTime  # noqa: E402

TARGET_WRITES_PER_SECOND = 90


async def drain(writes: int = 10_000, scale: float = 10.0, per_second: float = 2.0, burst: int = 50) -> dict[str, float]:
    """Drain `writes` lead creations; the figures of the run."""
    scaled = ScaledTime(scale)
    portal = await Bitrix24Portal(per_second=per_second, burst=burst, clock=scaled.clock).start()
    bucket = LeakyBucket(per_second, burst, clock=scaled.clock, sleep=scaled.sleep)
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), bucket, timeout_seconds=30)
    await client.open()
    commands = [Command(f"w{index}", "crm.lead.add",
                        {"fields": {"TITLE": f"Call {index}", "SOURCE_ID": "CALL", "ORIGIN_ID": f"bench-{index}",
                                    "ASSIGNED_BY_ID": 1,
                                    "PHONE": [{"VALUE": f"+3361{index:07d}", "VALUE_TYPE": "WORK"}]}})
                for index in range(writes)]
    try:
        portal.fill_bucket()
        bucket.fill()
        started, real_started = scaled.clock(), time.monotonic()
        done = await client.batch(commands)
        portal_seconds, real_seconds = scaled.clock() - started, time.monotonic() - real_started
    finally:
        await client.close()
        await portal.stop()
    return {
        "writes": writes,
        "written": len(done.results),
        "failed": len(done.errors),
        "requests": portal.requests,
        "portal_seconds": round(portal_seconds, 2),
        "real_seconds": round(real_seconds, 2),
        "writes_per_second": round(len(done.results) / portal_seconds, 1),
        "query_limit_exceeded": portal.limit_hits,
        "violations": len(portal.violations),
        "records_in_portal": len(portal.records["lead"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Bitrix24 outbox drain through the portal's leaky bucket")
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--scale", type=float, default=10.0, help="portal clock speed-up (1: real time)")
    parser.add_argument("--per-second", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(drain(args.writes, args.scale, args.per_second, args.burst))
    if args.json:
        print(json.dumps(figures))
        return
    ok = figures["writes_per_second"] >= TARGET_WRITES_PER_SECOND and figures["query_limit_exceeded"] == 0
    print(f"Bitrix24 drain: {figures['written']}/{figures['writes']} writes in {figures['requests']} requests, "
          f"{figures['portal_seconds']} portal-s ({figures['real_seconds']} s real, clock x{args.scale:g})")
    print(f"  {figures['writes_per_second']} writes/s (target >= {TARGET_WRITES_PER_SECOND}), "
          f"QUERY_LIMIT_EXCEEDED: {figures['query_limit_exceeded']} (target 0)  {'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
