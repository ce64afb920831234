"""Record the AMI events of real calls from the Asterisk 22 test sandbox into fixture files.

    .venv/bin/python scripts/record_ami_fixture.py                 # every scenario
    .venv/bin/python scripts/record_ami_fixture.py answered blind  # some of them
    .venv/bin/python scripts/record_ami_fixture.py --list
    .venv/bin/python scripts/record_ami_fixture.py --all-events --out /tmp/ami answered

Each scenario starts from an idle sandbox (the daemon DOWN, so agi-daemon.conf falls back to
the generated fallback context that rings the line's queue group), places one call with the
test AMI client (tests/asterisk/ami_client.py), and records what the daemon's own AMI client
(agi_daemon.asterisk.ami.AmiClient, a user with read=all, event mask "on") receives until
every channel of the call is gone. The file `tests/fixtures/ami/<scenario>.json` is a list of

    {"event": "Newchannel", "fields": {every header, as received}, "received_at": 1.7e9}
    {"resync": [{CoreShowChannel headers}, ...], "received_at": 1.7e9}   (late-join scenarios)

Only the events call tracking needs are kept (RECORDED_EVENTS), each with all its headers;
`--all-events` keeps every event, to explore. Where Asterisk races (ACCEPT), the scenario is
played again until the recording shows the variant its file stands for. Needs root and the cached Asterisk root
(`make sandbox`), like the tests marked `asterisk`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from agi_daemon.asterisk.ami import AmiClient, AmiEvent, AmiResync  # noqa: E402
from agi_daemon.core.model import (  # noqa: E402
    Dialing, Employee, Line, QueueGroup, QueueStrategy, Rules,
)
from tests.asterisk.ami_client import TestAmi, event_named, user_event  # noqa: E402
from tests.asterisk.sandbox import (  # noqa: E402
    AsteriskSandbox, closed_port, configured_root, unavailable_reason,
)

RECORDED_EVENTS = frozenset({
    "Newchannel", "Newstate", "DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave",
    "BlindTransfer", "AttendedTransfer", "Hangup",
})
FIXTURE_DIR = PROJECT / "tests" / "fixtures" / "ami"

LINE = "+33184880000"
CLIENT = "+33611223344"
EXTERNAL = "+33699887766"

RULES = Rules(
    default_region="FR",
    employees={
        "alice": Employee("alice", "Alice Martin", "101"),
        "bob": Employee("bob", "Bob Durand", "102"),
    },
    queue_groups={"sales": QueueGroup("sales", ("alice", "bob"), QueueStrategy.IN_ORDER, 2)},
    lines={LINE: Line(LINE, "Paris sales line", "sales")},
    dialing=Dialing("Local/{extension}@employees", "Local/{number}@trunk"),
)


def ring_of(linkedid: str, extension: str):
    return user_event("AgiDaemonTestRing", linkedid=linkedid, extension=extension)


async def employee_channel(ami: TestAmi, linkedid: str, extension: str) -> str:
    """The employee's side of the call: the ;1 half of Local/<ext>@employees (the half that
    is bridged with the caller; the ;2 half runs the [employees] context)."""
    for _ in range(50):
        for name in await ami.channels(linkedid):
            if name.startswith(f"Local/{extension}@employees-") and name.endswith(";1"):
                return name
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no channel for extension {extension} in call {linkedid}")


# ---------------------------------------------------------------- scenarios

async def answered(sandbox: AsteriskSandbox, ami: TestAmi) -> str:
    """(a) Incoming, 101 answers, the caller hangs up after about 2 s."""
    call = await ami.originate_incoming(LINE, CLIENT)
    await asyncio.wait_for(call.response, 10)
    await asyncio.sleep(2)
    await ami.hangup(await caller_channel(ami, call.linkedid))
    return call.linkedid


async def answered_on_a_desk_phone(sandbox: AsteriskSandbox, ami: TestAmi) -> str:
    """(a') Incoming, 101's endpoint Dial()s its desk phone, which answers; hung up after 2 s."""
    sandbox.set_global("EMPLOYEE_101", "deskphone")
    return await answered(sandbox, ami)


async def missed(sandbox: AsteriskSandbox, ami: TestAmi) -> str:
    """(b) Incoming, neither 101 nor 102 answers; the caller hangs up after both rang."""
    sandbox.set_global("EMPLOYEE_101", "noanswer")
    sandbox.set_global("EMPLOYEE_102", "noanswer")
    call = await ami.originate_incoming(LINE, CLIENT)
    await ami.wait_event(ring_of(call.linkedid, "101"), 5)
    await ami.wait_event(ring_of(call.linkedid, "102"), 5)
    await asyncio.sleep(1)
    await ami.hangup(await caller_channel(ami, call.linkedid))
    return call.linkedid


async def blind_transfer(sandbox: AsteriskSandbox, ami: TestAmi) -> str:
    """(c) Incoming, 101 answers, then blind-transfers the caller to 102, who answers."""
    call = await ami.originate_incoming(LINE, CLIENT)
    await asyncio.wait_for(call.response, 10)
    await asyncio.sleep(0.5)
    alice = await employee_channel(ami, call.linkedid, "101")
    await ami.action({"Action": "BlindTransfer", "Channel": alice, "Exten": "102",
                      "Context": "employees"})
    await ami.wait_event(event_named("BlindTransfer", transfererchannel=alice), 5)
    await ami.wait_event(ring_of(call.linkedid, "102"), 5)
    await asyncio.sleep(1)
    await ami.hangup(await caller_channel(ami, call.linkedid))
    return call.linkedid


async def attended_transfer(sandbox: AsteriskSandbox, ami: TestAmi) -> str:
    """(d) Incoming, 101 answers, Atxfer to 102 (the employee was dialled with `t`), 102
    answers the consultation call, 101 hangs up: AttendedTransfer; then the caller hangs up."""
    call = await ami.originate_incoming(LINE, CLIENT)
    await asyncio.wait_for(call.response, 10)
    await asyncio.sleep(0.5)
    alice = await employee_channel(ami, call.linkedid, "101")
    # "#" ends the digit collection at once; Async false for panoramisk (see ami_client.py).
    await ami.action({"Action": "Atxfer", "Channel": alice, "Exten": "102#",
                      "Context": "employees"})
    await ami.wait_event(user_event("AgiDaemonTestRing", extension="102"), 5)
    await asyncio.sleep(0.5)  # 102 answers the consultation call
    await ami.hangup(alice)
    await ami.wait_event(event_named("AttendedTransfer"), 5)
    await asyncio.sleep(1)
    await ami.hangup(await caller_channel(ami, call.linkedid))
    return call.linkedid


async def outgoing(sandbox: AsteriskSandbox, ami: TestAmi) -> str:
    """(e) Outgoing: extension 101 dials an external number, the trunk answers, 101 hangs up."""
    call = await ami.originate_outgoing(EXTERNAL, "101")
    await ami.wait_event(user_event("AgiDaemonTestTrunk", linkedid=call.linkedid), 5)
    await asyncio.wait_for(call.response, 10)
    await asyncio.sleep(1.5)
    await ami.hangup(await caller_channel(ami, call.linkedid))
    return call.linkedid


async def busy_then_answered(sandbox: AsteriskSandbox, ami: TestAmi) -> str:
    """(f) Incoming, 101 is busy, 102 answers; the caller hangs up after about 1 s."""
    sandbox.set_global("EMPLOYEE_101", "busy")
    call = await ami.originate_incoming(LINE, CLIENT)
    await asyncio.wait_for(call.response, 10)
    await ami.wait_event(ring_of(call.linkedid, "102"), 5)
    await asyncio.sleep(1)
    await ami.hangup(await caller_channel(ami, call.linkedid))
    return call.linkedid


async def caller_channel(ami: TestAmi, linkedid: str) -> str:
    """The client's side of a test call: the originated channel's ;2 half is the line's
    dialplan, its ;1 half the caller (originate-caller). Hanging up ;1 is the caller hanging up."""
    for name in await ami.channels(linkedid):
        if name.startswith("Local/") and "@agi-daemon-" in name and name.endswith(";1"):
            return name
    raise RuntimeError(f"no caller channel in call {linkedid}")


Scenario = Callable[[AsteriskSandbox, TestAmi], Awaitable[str]]
SCENARIOS: dict[str, Scenario] = {
    "incoming_answered": answered,
    "incoming_answered_deskphone": answered_on_a_desk_phone,
    "incoming_missed": missed,
    "incoming_blind_transfer": blind_transfer,
    "incoming_attended_transfer": attended_transfer,
    "incoming_attended_transfer_target_gone": attended_transfer,
    "outgoing_answered": outgoing,
    "incoming_busy_then_answered": busy_then_answered,
}


def _attended_transfer_lists_target(items: list[dict], listed: bool) -> bool:
    return any(item.get("event") == "AttendedTransfer"
               and ("TransferTargetChannel" in item["fields"]) == listed for item in items)


# Asterisk races when it publishes AttendedTransfer: the TransferTarget* headers are there only
# if the target is still in the consultation bridge at that moment (SecondBridgeNumChannels 1);
# often it has already moved to the caller's bridge and they are missing. Each variant has its
# fixture: the scenario is played again (up to RETRIES times) until the wanted one comes out.
ACCEPT: dict[str, Callable[[list[dict]], bool]] = {
    "incoming_attended_transfer": lambda items: _attended_transfer_lists_target(items, True),
    "incoming_attended_transfer_target_gone": lambda items: _attended_transfer_lists_target(items, False),
}
RETRIES = 20


async def late_blind_transfer(sandbox: AsteriskSandbox, ami: TestAmi, record) -> str:
    """(g) Like (c), but tracking connects after 101 answered: a resync, then the transfer."""
    call = await ami.originate_incoming(LINE, CLIENT)
    await asyncio.wait_for(call.response, 10)
    await asyncio.sleep(0.5)
    async with record():
        alice = await employee_channel(ami, call.linkedid, "101")
        await ami.action({"Action": "BlindTransfer", "Channel": alice, "Exten": "102",
                          "Context": "employees"})
        await ami.wait_event(event_named("BlindTransfer", transfererchannel=alice), 5)
        await ami.wait_event(ring_of(call.linkedid, "102"), 5)
        await asyncio.sleep(1)
        await ami.hangup(await caller_channel(ami, call.linkedid))
        await wait_idle(ami)
    return call.linkedid


# Scenarios whose recorder logs in while the call is already up: the file starts with the
# resync (CoreShowChannels) the daemon's client publishes at login, and goes on from there.
RECORD_AROUND = {"incoming_blind_transfer_after_resync": late_blind_transfer}


# ---------------------------------------------------------------- recording

class Recorder:
    """The daemon's AMI client, logged in as the sandbox's read=all user, keeping events."""

    def __init__(self, sandbox: AsteriskSandbox, keep: frozenset[str] | None) -> None:
        self.client = AmiClient("127.0.0.1", sandbox.ami_port, sandbox.ami_username,
                                sandbox.ami_secret, events=set(keep) if keep else None,
                                event_mask="on")
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
            if isinstance(item, AmiResync):
                if item.channels:
                    self.items.append({"resync": [snapshot_fields(c) for c in item.channels],
                                       "received_at": item.received_at})
                self._resynced.set()
            elif isinstance(item, AmiEvent):
                self.items.append({"event": item.name, "fields": dict(item.fields.items()),
                                   "received_at": item.received_at})


def snapshot_fields(channel) -> dict[str, str]:
    """A ChannelSnapshot back in CoreShowChannel header form (ChannelSnapshot.from_fields)."""
    seconds = channel.duration
    return {
        "Event": "CoreShowChannel", "Channel": channel.channel, "Uniqueid": channel.uniqueid,
        "Linkedid": channel.linkedid, "Context": channel.context, "Exten": channel.exten,
        "ChannelStateDesc": channel.state, "CallerIDNum": channel.caller_id_num,
        "ConnectedLineNum": channel.connected_line_num, "BridgeId": channel.bridge_id,
        "Application": channel.application,
        "Duration": f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
    }


async def wait_idle(ami: TestAmi, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while await ami.channels():
        if time.monotonic() > deadline:
            raise RuntimeError(f"channels still up: {await ami.channels()}")
        await asyncio.sleep(0.1)


async def record(sandbox: AsteriskSandbox, name: str, keep: frozenset[str] | None) -> list[dict]:
    sandbox.write_fallback(RULES)
    for extension in ("101", "102"):
        sandbox.set_global(f"EMPLOYEE_{extension}", "")
    async with TestAmi.connect(sandbox) as ami:
        await wait_idle(ami)
        if name in RECORD_AROUND:
            recorders: list[Recorder] = []

            def around():
                recorders.append(Recorder(sandbox, keep))
                return recorders[-1]

            await RECORD_AROUND[name](sandbox, ami, around)
            return recorders[0].items
        async with Recorder(sandbox, keep) as recorder:
            await SCENARIOS[name](sandbox, ami)
            await wait_idle(ami)
        return recorder.items


async def main(argv: list[str] | None = None) -> int:
    every = list(SCENARIOS) + list(RECORD_AROUND)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"default: all ({', '.join(every)})")
    parser.add_argument("--out", type=Path, default=FIXTURE_DIR)
    parser.add_argument("--all-events", action="store_true", help="keep every event, to explore")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for name in every:
            scenario = SCENARIOS.get(name) or RECORD_AROUND[name]
            variant = " [AttendedTransfer without TransferTarget*]" if name.endswith("_target_gone") else ""
            print(f"{name:40} {(scenario.__doc__ or '').strip().splitlines()[0]}{variant}")
        return 0
    unknown = [name for name in args.scenarios if name not in every]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    root = configured_root()
    reason = unavailable_reason(root)
    if reason:
        print(f"record_ami_fixture: {reason}", file=sys.stderr)
        return 2
    keep = None if args.all_events else RECORDED_EVENTS
    args.out.mkdir(parents=True, exist_ok=True)
    sandbox = AsteriskSandbox(root, "record", closed_port())
    sandbox.start()
    try:
        for name in args.scenarios or every:
            accept = ACCEPT.get(name, lambda items: True)
            for _ in range(RETRIES):
                items = await record(sandbox, name, keep)
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
