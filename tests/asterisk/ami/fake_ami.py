"""A fake Asterisk Manager Interface peer for the AMI client's tests.

An asyncio server on 127.0.0.1 (port 0) speaking the AMI text protocol the way Asterisk 22
does: banner, ``Login`` (checks the secret, refuses and hangs up otherwise), ``Ping`` (can be
told to stay silent), ``CoreShowChannels`` with scripted channels, ``Originate`` / ``Atxfer``
answered "successfully queued", ``Logoff``. It pushes events to logged-in sessions, at a
controlled rate if asked, and drops connections on demand. It parses what it reads with its
own few lines of code, independent of the codec under test.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
Fields = Mapping[str, str]


def encode(fields: Fields) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode() + b"\r\n"


def channel(n: int, *, linkedid: str | None = None, state: str = "Up") -> dict[str, str]:
    """The headers of one scripted CoreShowChannel item."""
    uniqueid = f"1700000000.{n}"
    return {
        "Channel": f"PJSIP/10{n}-0000000{n}", "ChannelState": "6", "ChannelStateDesc": state,
        "CallerIDNum": f"10{n}", "CallerIDName": "Alice", "ConnectedLineNum": "+33612000001",
        "ConnectedLineName": "<unknown>", "Language": "fr", "AccountCode": "",
        "Context": "agi-daemon-incoming", "Exten": "+33184880000", "Priority": "3",
        "Uniqueid": uniqueid, "Linkedid": linkedid or uniqueid, "BridgeId": f"bridge-{n}",
        "Application": "Dial", "ApplicationData": "PJSIP/101,20,T", "Duration": "00:01:05",
    }


class _Session:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.logged_in = False


class FakeAmi:
    """Start with ``async with FakeAmi(...) as ami``; connect the client to ``ami.port``."""

    def __init__(self, *, username: str = "agi-daemon", secret: str = "s3cret",
                 channels: list[dict[str, str]] | None = None) -> None:
        self.username = username
        self.secret = secret
        self.channels = channels if channels is not None else []
        self.answer_pings = True
        self.answer_core_show_channels = True  # False: a PBX too busy to list its channels
        self.pings_to_ignore = 0  # ignore this many pings, then answer again
        self.after_login: list[dict[str, str]] = []  # events sent right after a login succeeds
        self.logins: list[tuple[float, bool]] = []  # (monotonic time, accepted)
        self.login_events: list[str] = []  # the Events header of each login
        self.actions: list[dict[str, str]] = []  # actions received (keys lower-cased), in order
        self.pings = 0
        self.connections = 0
        self._sessions: set[_Session] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._logged_in = asyncio.Condition()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> FakeAmi:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    # -- test controls ---------------------------------------------------------------------

    def push(self, event: Fields) -> None:
        """Send one event to every logged-in session."""
        data = encode(event)
        for session in self._sessions:
            if session.logged_in:
                session.writer.write(data)

    async def flood(self, count: int, rate: float, make: Callable[[int], Fields]) -> None:
        """Send ``count`` events ``make(0)`` … ``make(count - 1)`` at ``rate`` per second."""
        start = time.monotonic()
        sent = 0
        while sent < count:
            due = min(count, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                self.push(make(sent))
                sent += 1
            for session in list(self._sessions):
                await session.writer.drain()
            await asyncio.sleep(0.005)

    def drop(self) -> None:
        """Close every connection at once, as a crashing or restarting Asterisk would."""
        for session in list(self._sessions):
            session.writer.transport.abort()

    async def wait_logins(self, accepted: int) -> None:
        """Wait until that many logins have been accepted in total."""
        async with self._logged_in:
            await self._logged_in.wait_for(lambda: sum(ok for _, ok in self.logins) >= accepted)

    # -- the protocol ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        session = _Session(writer)
        self._sessions.add(session)
        self.connections += 1
        try:
            writer.write(BANNER)
            while True:
                block = await reader.readuntil(b"\r\n\r\n")
                action: dict[str, str] = {}
                for line in block.decode().split("\r\n"):
                    key, _, value = line.partition(": ")
                    if key:
                        action[key.lower()] = value
                if not await self._answer(session, action):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._sessions.discard(session)
            self._handlers.discard(task)
            writer.transport.abort()

    async def _answer(self, session: _Session, action: dict[str, str]) -> bool:
        """Answer one action; False to hang up."""
        name = action.get("action", "").lower()
        self.actions.append(action)
        reply = {"Response": "Success", "ActionID": action.get("actionid", "")}
        write = session.writer.write
        if name == "login":
            accepted = (action.get("username") == self.username
                        and action.get("secret") == self.secret)
            self.logins.append((time.monotonic(), accepted))
            self.login_events.append(action.get("events", ""))
            if not accepted:
                write(encode({**reply, "Response": "Error", "Message": "Authentication failed"}))
                return False
            write(encode({**reply, "Message": "Authentication accepted"}))
            session.logged_in = True
            for event in self.after_login:
                write(encode(event))
            async with self._logged_in:
                self._logged_in.notify_all()
        elif not session.logged_in:
            write(encode({**reply, "Response": "Error", "Message": "Permission denied"}))
        elif name == "ping":
            self.pings += 1
            if self.pings_to_ignore > 0:
                self.pings_to_ignore -= 1
            elif self.answer_pings:
                write(encode({**reply, "Ping": "Pong", "Timestamp": f"{time.time():.6f}"}))
        elif name == "coreshowchannels" and not self.answer_core_show_channels:
            pass
        elif name == "coreshowchannels":
            write(encode({**reply, "EventList": "start", "Message": "Channels will follow"}))
            for item in self.channels:
                write(encode({"Event": "CoreShowChannel", "ActionID": reply["ActionID"], **item}))
            write(encode({"Event": "CoreShowChannelsComplete", "ActionID": reply["ActionID"],
                          "EventList": "Complete", "ListItems": str(len(self.channels))}))
        elif name in ("originate", "atxfer"):
            write(encode({**reply, "Message": f"{action['action']} successfully queued"}))
        elif name == "logoff":
            write(encode({**reply, "Response": "Goodbye", "Message": "Thanks for all the fish."}))
            return False
        else:
            write(encode({**reply, "Response": "Error", "Message": "Invalid/unknown command"}))
        return True
