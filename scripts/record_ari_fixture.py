"""Record the ARI events of real calls from the Asterisk 22 test sandbox into fixture files:
the same scenarios as scripts/record_ami_fixture.py, heard over ARI.

    .venv/bin/python scripts/record_ari_fixture.py                 # every scenario
    .venv/bin/python scripts/record_ari_fixture.py answered_incoming blind ...
    .venv/bin/python scripts/record_ari_fixture.py --list

Each scenario starts from an idle sandbox whose extensions.conf includes the Stasis variant
(dialplan/agi-daemon-stasis.conf) with the daemon DOWN: Stasis() fails at once and the call
falls back to the generated fallback context, which rings the line's queue group, as in the
AMI recordings. The daemon's own ARI client (agi_daemon.asterisk.ari.AriClient, the sandbox's
test user, application "agi-daemon-recorder", every channel, bridge and endpoint) records what it receives until
every channel of the call is gone. `tests/fixtures/ari/<scenario>.json` is a list of

    {"type": "ChannelCreated", "body": {the event, as received}, "received_at": 1.7e9}
    {"resync": {"channels": [GET /channels], "bridges": [GET /bridges]}, "received_at": 1.7e9}

(the resync only in late-join scenarios). Only the event types call tracking reads are kept
(agi_daemon.asterisk.ari.EVENT_TYPES). The expected outcome of each scenario is written once,
in tests/core/test_tracker.py, for both transports. Needs root and the cached Asterisk root
(`make sandbox`), like the tests marked `asterisk`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "scripts"))

from agi_daemon.asterisk.ari import EVENT_TYPES, AriClient, AriEvent, AriResync  # noqa: E402
from record_ami_fixture import RECORD_AROUND, RETRIES, RULES, SCENARIOS, wait_idle  # noqa: E402
from tests.asterisk.ami_client import TestAmi  # noqa: E402
from tests.asterisk.sandbox import AsteriskSandbox, closed_port, configured_root, unavailable_reason  # noqa: E402

FIXTURE_DIR = PROJECT / "tests" / "fixtures" / "ari"
APP = "agi-daemon-recorder"  # not the dialplan's application: Stasis() must fail, as with the daemon down


class Recorder:
    """The daemon's ARI client, as the sandbox's test user, keeping events."""

    def __init__(self, sandbox: AsteriskSandbox) -> None:
        self.client = AriClient(sandbox.ari_url, sandbox.ari_username, sandbox.ari_password, APP,
                                event_types=EVENT_TYPES)
        self.items: list[dict] = []
        self._tasks: list[asyncio.Task] = []
        self._resynced = asyncio.Event()

    async def __aenter__(self) -> "Recorder":
        self._tasks = [asyncio.create_task(self.client.run()), asyncio.create_task(self._read())]
        await asyncio.wait_for(self._resynced.wait(), 10)
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.sleep(0.3)  # the last events of the call
        await self.client.close()
        await asyncio.gather(*self._tasks)

    async def _read(self) -> None:
        async for item in self.client.events():
            if isinstance(item, AriResync):
                if item.channels:
                    self.items.append({"resync": {"channels": list(item.channels), "bridges": list(item.bridges)},
                                       "received_at": item.received_at})
                self._resynced.set()
            elif isinstance(item, AriEvent):
                self.items.append({"type": item.type, "body": dict(item.body), "received_at": item.received_at})


def _attended_transfer_lists_target(items: list[dict], listed: bool) -> bool:
    return any(item.get("type") == "BridgeAttendedTransfer" and ("transfer_target" in item["body"]) == listed
               for item in items)


# The AMI recordings' race, as ARI shows it: the target channel is named or not.
ACCEPT: dict[str, Callable[[list[dict]], bool]] = {
    "incoming_attended_transfer": lambda items: _attended_transfer_lists_target(items, True),
    "incoming_attended_transfer_target_gone": lambda items: _attended_transfer_lists_target(items, False),
}


async def record(sandbox: AsteriskSandbox, name: str) -> list[dict]:
    sandbox.write_fallback(RULES)
    for extension in ("101", "102"):
        sandbox.set_global(f"EMPLOYEE_{extension}", "")
    async with TestAmi.connect(sandbox) as ami:
        await wait_idle(ami)
        if name in RECORD_AROUND:
            recorders: list[Recorder] = []

            def around():
                recorders.append(Recorder(sandbox))
                return recorders[-1]

            await RECORD_AROUND[name](sandbox, ami, around)
            return recorders[0].items
        async with Recorder(sandbox) as recorder:
            await SCENARIOS[name](sandbox, ami)
            await wait_idle(ami)
        return recorder.items


async def main(argv: list[str] | None = None) -> int:
    every = list(SCENARIOS) + list(RECORD_AROUND)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"default: all ({', '.join(every)})")
    parser.add_argument("--out", type=Path, default=FIXTURE_DIR)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(every))
        return 0
    unknown = [name for name in args.scenarios if name not in every]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    root = configured_root()
    reason = unavailable_reason(root)
    if reason:
        print(f"record_ari_fixture: {reason}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    sandbox = AsteriskSandbox(root, "record-ari", closed_port())
    sandbox.start()
    try:
        sandbox.use_dialplan("stasis")
        for name in args.scenarios or every:
            accept = ACCEPT.get(name, lambda items: True)
            for _ in range(RETRIES):
                items = await record(sandbox, name)
                if accept(items):
                    break
            else:
                print(f"{name}: the wanted variant did not come out in {RETRIES} tries", file=sys.stderr)
                return 1
            path = args.out / f"{name}.json"
            path.write_text(json.dumps(items, indent=1, ensure_ascii=False) + "\n")
            print(f"{path}: {len(items)} items")
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
