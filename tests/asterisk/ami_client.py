"""A small async AMI client for tests, over panoramisk (not the daemon's AMI wrapper).

    async with TestAmi.connect(sandbox) as ami:
        call = await ami.originate_incoming("+33184880000", "+33612345678")
        ring = await ami.wait_event(user_event("AgiDaemonTestRing", linkedid=call.linkedid))

Every event is kept (a sync callback appends it to a list), so `wait_event` finds events that
arrived before it was called; pass `since=ami.mark()` to look only at newer ones.
Originate is always sent with `Async: true` (panoramisk 1.4 drops the connection on
"successfully queued" without it) and a ChannelId, which becomes the call's linkedid.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from panoramisk import Manager

Event = dict[str, str]
Predicate = Callable[[Event], bool]


class AmiError(RuntimeError):
    pass


def user_event(name: str, **fields: str) -> Predicate:
    """Matches `UserEvent(name,Key: value...)`; field names are compared case-insensitively."""
    wanted = {k.lower(): v for k, v in fields.items()}

    def match(event: Event) -> bool:
        if event.get("event") != "UserEvent" or event.get("userevent") != name:
            return False
        return all(event.get(key) == value for key, value in wanted.items())

    return match


def event_named(name: str, **fields: str) -> Predicate:
    wanted = {k.lower(): v for k, v in fields.items()}

    def match(event: Event) -> bool:
        return event.get("event") == name and all(event.get(k) == v for k, v in wanted.items())

    return match


@dataclass
class Origination:
    linkedid: str  # the ChannelId given to the originated channel, so the call's linkedid
    channel: str  # Local/...: the channel string that was originated
    response: asyncio.Future = field(repr=False)  # resolves with OriginateResponse (answer/failure)


class TestAmi:
    __test__ = False  # not a pytest class

    def __init__(self, host: str, port: int, username: str, secret: str) -> None:
        self._manager = Manager(host=host, port=port, username=username, secret=secret,
                                ping_delay=3600, reconnect_timeout=3600)
        self.events: list[Event] = []
        self._new_event = asyncio.Event()
        self._manager.register_event("*", self._on_event)
        self._pending: list[asyncio.Future] = []
        self.originated: list[Origination] = []

    @classmethod
    def connect(cls, sandbox, timeout: float = 10.0) -> "_Connecting":
        client = cls("127.0.0.1", sandbox.ami_port, sandbox.ami_username, sandbox.ami_secret)
        return _Connecting(client, timeout)

    async def open(self, timeout: float = 10.0) -> "TestAmi":
        async def login() -> None:
            self._manager.loop = asyncio.get_running_loop()
            await self._manager.connect()
            while self._manager.authenticated_future is None and not self._manager.authenticated:
                await asyncio.sleep(0.01)
            if self._manager.authenticated_future is not None:
                await self._manager.authenticated_future
            if not self._manager.authenticated:
                raise AmiError("AMI login refused")
            await self.wait_event(event_named("FullyBooted"), timeout)

        await asyncio.wait_for(login(), timeout)
        return self

    async def close(self) -> None:
        for future in self._pending:
            if not future.done():
                future.cancel()
        self._manager.close()
        await asyncio.sleep(0)

    def _on_event(self, _manager: Manager, message: Any) -> None:
        # A header repeated in one event comes as a list: keep its first value.
        event = {str(k).lower(): str(v[0] if isinstance(v, list) and v else v)
                 for k, v in message.items()}
        self.events.append(event)
        self._new_event.set()

    # ------------------------------------------------------------------ events

    def mark(self) -> int:
        """An index into `events`: pass it as `since` to wait only for later events."""
        return len(self.events)

    async def wait_event(self, predicate: Predicate, timeout: float = 10.0, *, since: int = 0) -> Event:
        async def scan() -> Event:
            index = since
            while True:
                while index < len(self.events):
                    event = self.events[index]
                    index += 1
                    if predicate(event):
                        return event
                self._new_event.clear()
                await self._new_event.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no matching AMI event within {timeout} s "
                                 f"({len(self.events) - since} events seen)") from None

    async def no_event(self, predicate: Predicate, within: float, *, since: int = 0) -> None:
        """Assert that no matching event arrives within `within` seconds."""
        try:
            event = await self.wait_event(predicate, within, since=since)
        except AssertionError:
            return
        raise AssertionError(f"unexpected AMI event: {event}")

    # ------------------------------------------------------------------ actions

    async def action(self, fields: dict[str, str], timeout: float = 10.0) -> Any:
        """Send an action and wait for its response (a list for actions that list things).

        `Async: false` is added unless given: panoramisk 1.4 treats a "successfully queued"
        reply (Atxfer, ...) as the start of a list when the header is missing or true, and
        waits forever (or drops the connection with KeyError 'async')."""
        fields = {"Async": "false", **fields}
        response = await asyncio.wait_for(self._manager.send_action(fields), timeout)
        first = response[0] if isinstance(response, list) else response
        if first.get("Response") not in ("Success", "Goodbye", "Follows"):
            raise AmiError(f"{fields.get('Action')} failed: {dict(first)}")
        return response

    async def command(self, cli: str, timeout: float = 10.0) -> str:
        response = await asyncio.wait_for(self._manager.send_command(cli), timeout)
        output = response.get("Output", "")
        return "\n".join(output) if isinstance(output, list) else str(output)

    async def originate(self, channel: str, caller_id: str, *, linkedid: str | None = None,
                        context: str = "originate-caller", exten: str = "s",
                        timeout_ms: int = 120_000, variables: dict[str, str] | None = None) -> Origination:
        linkedid = linkedid or f"agitest-{uuid.uuid4().hex[:16]}"
        fields: dict[str, Any] = {
            "Action": "Originate", "Channel": channel, "Context": context, "Exten": exten,
            "Priority": "1", "CallerID": caller_id, "Timeout": str(timeout_ms),
            "ChannelId": linkedid, "OtherChannelId": f"{linkedid}-2", "Async": "true",
        }
        if variables:
            fields["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        future = self._manager.send_action(fields)
        self._pending.append(future)
        # The first reply ("Originate successfully queued") does not resolve the future: it
        # resolves with the OriginateResponse once the call is answered or has failed.
        origination = Origination(linkedid=linkedid, channel=channel, response=future)
        self.originated.append(origination)
        return origination

    async def originate_incoming(self, line_exten: str, caller_number: str, *,
                                 linkedid: str | None = None, **kwargs) -> Origination:
        """A client calls the line: Local/<line>@agi-daemon-incoming, caller ID = client."""
        return await self.originate(f"Local/{line_exten}@agi-daemon-incoming",
                                    f'"{caller_number}" <{caller_number}>', linkedid=linkedid, **kwargs)

    async def originate_outgoing(self, number: str, employee_extension: str, *,
                                 linkedid: str | None = None, **kwargs) -> Origination:
        """An employee dials an external number: Local/<number>@agi-daemon-outgoing."""
        return await self.originate(f"Local/{number}@agi-daemon-outgoing",
                                    f'"{employee_extension}" <{employee_extension}>',
                                    linkedid=linkedid, **kwargs)

    async def hangup(self, channel: str) -> None:
        await self.action({"Action": "Hangup", "Channel": channel})

    async def hangup_call(self, linkedid: str) -> None:
        """Hang up every live channel of the call."""
        for channel in await self.channels(linkedid):
            try:
                await self.hangup(channel)
            except AmiError:
                pass  # already gone

    async def hangup_originated(self, timeout: float = 5.0) -> None:
        """Hang up what is left of every call this client originated, and wait until it is gone
        (hangup handlers included), so the next test starts on an idle Asterisk."""
        linkedids = {o.linkedid for o in self.originated}
        deadline = asyncio.get_running_loop().time() + timeout
        while linkedids:
            live = [c for c in await self.channels(None, with_linkedid=True) if c[1] in linkedids]
            if not live:
                break
            for channel, _ in live:
                try:
                    await self.hangup(channel)
                except AmiError:
                    pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"channels still up after hangup: {live}")
            await asyncio.sleep(0.1)
        self.originated.clear()

    async def channels(self, linkedid: str | None = None, *, with_linkedid: bool = False) -> list:
        """Names of the live channels (of one call when linkedid is given);
        (name, linkedid) pairs with with_linkedid=True."""
        responses = await self.action({"Action": "CoreShowChannels"})
        found = []
        for message in responses if isinstance(responses, list) else [responses]:
            if message.get("Event") != "CoreShowChannel":
                continue
            if linkedid is None or message.get("Linkedid") == linkedid:
                name = message.get("Channel")
                found.append((name, message.get("Linkedid")) if with_linkedid else name)
        # a channel is listed once by Asterisk; a list read twice (seen once in a full run of
        # the suite: the same caller-side channel twice) must not make it two channels
        return list(dict.fromkeys(found))

    async def set_global(self, name: str, value: str) -> None:
        await self.action({"Action": "Setvar", "Variable": name, "Value": value})

    async def getvar(self, name: str, channel: str | None = None) -> str:
        fields = {"Action": "Getvar", "Variable": name}
        if channel:
            fields["Channel"] = channel
        response = await self.action(fields)
        return response.get("Value", "") or ""


class _Connecting:
    """`async with TestAmi.connect(sandbox) as ami:` (or `ami = await TestAmi.connect(...)`)."""

    def __init__(self, client: TestAmi, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    def __await__(self):
        return self._client.open(self._timeout).__await__()

    async def __aenter__(self) -> TestAmi:
        return await self._client.open(self._timeout)

    async def __aexit__(self, *exc) -> None:
        await self._client.close()


async def bridged_employee_channel(ami: TestAmi, linkedid: str, extension: str, timeout: float = 5.0) -> str:
    """The channel of employee <extension> (Local/<ext>@employees-...;1) on call <linkedid>, once
    it is in a bridge with the caller: only then can it transfer (Asterisk answers a transfer
    of a channel not bridged yet with "Transfer invalid"; Originate's answer comes first)."""
    channels = await ami.channels(linkedid)
    channel = next(c for c in channels if c.startswith(f"Local/{extension}@employees-") and c.endswith(";1"))
    await ami.wait_event(event_named("BridgeEnter", channel=channel), timeout)
    return channel


async def blind_transfer(ami: TestAmi, linkedid: str, extension: str, target: str, timeout: float = 5.0,
                         *, context: str = "employees") -> None:
    """Employee <extension>, talking on call <linkedid>, blind-transfers it to <target> the way
    an agent does (AMI BlindTransfer of their channel, once it is bridged; the digits looked up
    in `context`), and the transfer succeeded."""
    channel = await bridged_employee_channel(ami, linkedid, extension, timeout)
    since = ami.mark()
    await ami.action({"Action": "BlindTransfer", "Channel": channel, "Exten": target, "Context": context})
    await ami.wait_event(event_named("BlindTransfer", transfererchannel=channel, result="Success"), timeout, since=since)
