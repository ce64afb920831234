"""ARI mode's cost beside FastAGI+AMI mode: `python -m bench.ari` (`--quick`: a few calls, to
check every figure comes out). Needs root and the cached Asterisk root, like the tests marked
`asterisk` (`make sandbox`).

1. per real call: a real `agi-daemon run` process, once with FastAGI+AMI
   (dialplan/agi-daemon.conf) and once with Stasis+ARI (dialplan/agi-daemon-stasis.conf),
   beside the real Asterisk 22 sandbox. Calls from known clients are placed one after the
   other (answered by the responsible, hung up after a short talk); the daemon's whole CPU time
   per call (routing, call tracking, the hangup report, the CRM writes) is read from
   /proc/PID/stat (as bench/real_calls.py does for FastAGI+AMI with Asterisk's CPU beside it).
2. tracking: the recorded ARI events of the same calls as the AMI fixtures (tests/fixtures/ari)
   replayed through the ARI translation and the tracker fold, in-process.

`measure()` returns the figures (name -> µs) for `make bench` to print beside its own.
"""
from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agi_daemon.asterisk.ari.translate import translate as translate_ari  # noqa: E402
from agi_daemon.core.model import Rules  # noqa: E402
from agi_daemon.crm.embedded import EmbeddedCrm  # noqa: E402
from agi_daemon.settings import load_settings  # noqa: E402
from bench.procs import cpu_seconds  # noqa: E402
from bench.tracking import bench_rules, replay  # noqa: E402
from tests.asterisk.ami_client import TestAmi  # noqa: E402
from tests.asterisk.sandbox import AsteriskSandbox, closed_port, configured_root, unavailable_reason  # noqa: E402
from tests.daemon_harness import MODE_IDS, MODES, Mode  # noqa: E402
from tests.fixtures import ari_fixture_names, ari_items  # noqa: E402

LINE_AS_DIALLED = "0184880000"
CONNECTED = {"ami": r"AMI .*: logged in as", "ari": r"ARI .*: events connected as"}


def tracking_ari(rules: Rules, rounds: int) -> dict[str, float]:
    return replay(rules, [ari_items(name) for name in ari_fixture_names()], translate_ari, rounds, "tracking over ARI")


async def per_call(sandbox: AsteriskSandbox, mode_name: str, calls: int) -> float:
    """µs of the daemon's CPU per real call in this mode. A run of under 10 calls (the suite's
    quick bench, which checks that the figure comes out) warms up and waits less."""
    small = calls < 10
    warm_up, pause, idle_seconds = (1, 0.3, 0.5) if small else (5, 1.0, 2.0)
    with tempfile.TemporaryDirectory() as tmp:
        mode = Mode(mode_name, sandbox)
        config = mode.config(Path(tmp), ring=5, responsible_ring=5)
        settings = load_settings(config)
        async with EmbeddedCrm(settings.crm.embedded.database) as crm:
            for n in range(calls + warm_up):
                await crm.add_record("contact", f"Client {n}", f"+3361{n:07d}", "alice")
        log = Path(tmp) / "daemon.log"
        with log.open("w") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agi_daemon", "run", "-c", str(config), stderr=log_file, cwd=tmp)
        try:
            port = int(await _logged(log, r"FastAGI listening on 127\.0\.0\.1:(\d+)"))
            await _logged(log, CONNECTED[mode_name])
            sandbox.write_fallback(settings.rules)
            sandbox.set_agi_port(port)
            async with TestAmi.connect(sandbox) as ami:
                for n in range(warm_up):
                    await _call(ami, f"+3361{calls + n:07d}")
                await asyncio.sleep(pause)
                before = cpu_seconds(process.pid)
                started = time.monotonic()
                for n in range(calls):
                    await _call(ami, f"+3361{n:07d}")
                await asyncio.sleep(pause)  # the CRM writes of the last call
                spent = cpu_seconds(process.pid) - before
                idle = await _idle_cpu(process.pid, idle_seconds) * (time.monotonic() - started)
            calls_logged = len(re.findall(r": logged ", log.read_text()))
            if calls_logged < calls:
                raise RuntimeError(f"{mode_name}: only {calls_logged} call-log lines for {calls} calls:\n"
                                   + log.read_text()[-3000:])
            return max(0.0, spent - idle) / calls * 1e6
        finally:
            process.terminate()
            await process.wait()
            sandbox.set_agi_port(closed_port())


async def _call(ami: TestAmi, caller: str) -> None:
    call = await ami.originate_incoming(LINE_AS_DIALLED, caller)
    await asyncio.wait_for(call.response, 10)  # alice answered
    await asyncio.sleep(0.05)
    await ami.hangup_call(call.linkedid)
    deadline = time.monotonic() + 10
    while await ami.channels(call.linkedid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"call {call.linkedid} still up")
        await asyncio.sleep(0.02)


async def _idle_cpu(pid: int, seconds: float) -> float:
    """The daemon's CPU seconds per second when no call runs (keepalives), to subtract."""
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


async def _logged(log: Path, pattern: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if found := re.search(pattern, log.read_text()):
            return found[1] if found.groups() else found[0]
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the daemon never logged {pattern!r}:\n{log.read_text()[-3000:]}")


async def calls_side_by_side(calls: int) -> dict[str, float]:
    root = configured_root()
    reason = unavailable_reason(root)
    if reason is not None:
        print(f"bench.ari: per-call figures skipped: {reason}", file=sys.stderr)
        return {}
    sandbox = AsteriskSandbox(root, "bench-ari", closed_port())
    sandbox.start()
    try:
        return {f"daemon per real call, {label} (µs CPU/call)": await per_call(sandbox, name, calls)
                for name, label in zip(MODES, MODE_IDS, strict=True)}
    finally:
        sandbox.stop()


def measure(calls: int = 40, rounds: int = 200) -> dict[str, float]:
    """Every figure of this module (for `make bench`)."""
    results = asyncio.run(calls_side_by_side(calls))
    results.update(tracking_ari(bench_rules(), rounds))
    return results


def main(argv: list[str] | None = None) -> int:
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    results = measure(calls=10, rounds=2) if quick else measure()
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:{width}} {value:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
