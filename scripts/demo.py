"""`make demo`: the call window working within a minute, on this machine only.

Starts the sandboxed Asterisk 22 (the tests' own, from the cached Debian root), the daemon on
a demo config in var/demo/ (its web pages on an ephemeral port of 127.0.0.1), gives alice
(agent) and carol (admin) a password, and a scripted caller places calls: a known client, a
new client on the `offer` line (left ringing on alice's window so the "Create lead" button can
be tried), and a call alice answers then blind-transfers to bob. Prints the URL and the logins,
then keeps going until Ctrl-C (`--seconds N` stops after N seconds).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from agi_daemon.crm.embedded import EmbeddedCrm  # noqa: E402
from agi_daemon.crm.users import WebUsers, hash_password  # noqa: E402
from tests.asterisk.ami_client import TestAmi  # noqa: E402
from tests.asterisk.sandbox import AsteriskSandbox, closed_port, configured_root, unavailable_reason  # noqa: E402
from tests.daemon_harness import CLIENT, UNKNOWN, rang, running_daemon, write_config  # noqa: E402
from tests.asterisk.ami_client import blind_transfer  # noqa: E402

PASSWORD = "demo-password"
PARIS, LYON = "0184880000", "0472000000"
SECOND_CLIENT = "+33611000099"


def demo_config(directory: Path, ami: tuple[int, str, str]) -> Path:
    path = write_config(directory, ring=30, responsible_ring=20, ami=ami)
    text = path.read_text().replace("employees:\n", "employees:\n  carol: {name: Carol Petit, admin: true}\n", 1)
    path.write_text(text)
    return path


async def scripted_calls(ami: TestAmi, say) -> None:
    """A known client answered by alice, a call transferred to bob, then a new client on the
    offer line, left ringing on alice's window (alice does not pick up)."""
    known = await ami.originate_incoming(PARIS, CLIENT)
    await asyncio.wait_for(known.response, 10)
    say("  known client (Client SA) answered by alice")
    await asyncio.sleep(2)
    await ami.hangup_call(known.linkedid)

    since = ami.mark()
    moved = await ami.originate_incoming(PARIS, SECOND_CLIENT)
    await asyncio.wait_for(moved.response, 10)
    await ami.wait_event(rang(moved.linkedid, "101"), 10, since=since)
    await blind_transfer(ami, moved.linkedid, "101", "102")
    say("  new client answered by alice, blind-transferred to bob (the new lead is now bob's)")
    await asyncio.sleep(2)
    await ami.hangup_call(moved.linkedid)

    await ami.set_global("EMPLOYEE_101", "noanswer")
    since = ami.mark()
    offered = await ami.originate_incoming(LYON, UNKNOWN)
    await ami.wait_event(rang(offered.linkedid, "101"), 10, since=since)
    say("  new client on the Lyon support line (unknown_caller: offer) ringing on alice's window")


async def demo(seconds: float | None) -> int:
    root = configured_root()
    reason = unavailable_reason(root)
    if reason is not None:
        print(f"demo: {reason} (run `make sandbox` as root)", file=sys.stderr)
        return 1
    directory = Path(os.environ.get("AGI_DAEMON_DEMO_DIR", PROJECT / "var" / "demo"))
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    sandbox = AsteriskSandbox(root, "demo", closed_port())
    sandbox.start()
    try:
        config = demo_config(directory, sandbox.daemon_ami)
        async with EmbeddedCrm(f"sqlite:///{directory}/crm.sqlite3") as crm:
            await crm.add_record("contact", "Client SA", CLIENT, "alice")
            users = WebUsers(crm)
            for employee in ("alice", "bob", "carol"):
                await users.set_password_hash(employee, hash_password(PASSWORD))
            async with running_daemon(sandbox, config, crm) as daemon:
                url = f"http://127.0.0.1:{daemon.web_port}/"
                print(f"\nagi-daemon demo: open {url}")
                print(f"  agents: alice or bob, admin: carol; password {PASSWORD}\n", flush=True)
                async with TestAmi.connect(sandbox) as ami:
                    await scripted_calls(ami, lambda line: print(line, flush=True))
                    print("\nlog in as alice to answer the ringing call with \"Create lead\"; Ctrl-C stops",
                          flush=True)
                    await _wait(seconds)
                    await ami.hangup_originated()
    finally:
        sandbox.stop()
    return 0


async def _wait(seconds: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (default: at Ctrl-C)")
    return asyncio.run(demo(parser.parse_args().seconds))


if __name__ == "__main__":
    sys.exit(main())
