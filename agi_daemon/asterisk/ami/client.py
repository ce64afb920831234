"""The AMI connection: login, keepalive, reconnection, resync, actions and the event queue.

`AmiClient.run()` is one long-running coroutine that the application owns (in its TaskGroup).
It repeats: connect, read the banner, ``Login`` with an event mask, ``CoreShowChannels`` to
publish an `AmiResync`, then ``Ping`` every ``ping_interval`` until the link dies; then it
waits a backoff delay and starts again. Each connection runs in one child task that `run()`
creates and awaits, so nothing outlives it.

Events are parsed and filtered inside the protocol's ``data_received`` and put on a bounded
queue synchronously: reading never waits on the consumer. When the queue is full the event is
counted in `dropped` (and logged at most once a second); the tracker resyncs anyway after a
reconnect, so a slow consumer degrades call records, never the socket. The reconnecting loop,
its outage logging and the queue are shared with the ARI client (`agi_daemon.asterisk.link`).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence

from ..link import EventQueue, KeptLink, LinkStatus
from .codec import AmiFields, AmiParser, encode_action
from .errors import (
    AmiActionTimeout,
    AmiAuthError,
    AmiConnectionLost,
    AmiError,
    AmiNotConnected,
    AmiProtocolError,
)
from .model import AmiEvent, AmiItem, AmiResponse, AmiResync, ChannelSnapshot

MISSED_PINGS_LIMIT = 2  # unanswered pings in a row that declare the link dead
# Actions Asterisk answers "… successfully queued": `Async` is always sent explicitly for them.
QUEUED_ACTIONS = frozenset({"originate", "atxfer"})
_SUCCESS = frozenset({"success", "follows", "goodbye"})

# What an AMI outage stops, and what still works, in the line that reports it
DEGRADED = ("call tracking paused (transfers and call details wait, hangup reports still log calls); "
            "calls are still routed")

_Reply = tuple[AmiFields, tuple[AmiFields, ...]]
FieldValue = str | int | Sequence[str]


class _Pending:
    """One action waiting for its answer; list actions also collect their events."""

    __slots__ = ("future", "reply", "items")

    def __init__(self, future: asyncio.Future[_Reply]) -> None:
        self.future = future
        self.reply: AmiFields | None = None
        self.items: list[AmiFields] = []

    def feed(self, message: AmiFields) -> bool:
        """Take a message carrying this action's ActionID; False when it is not ours to take
        (an ``OriginateResponse`` after the answer, for instance)."""
        if self.future.done():
            return False
        if self.reply is None:
            if "Response" not in message:
                return False
            if message.get("EventList", "").lower() == "start":
                self.reply = message
            else:  # a single answer, "successfully queued" included: complete, whatever Async said
                self.future.set_result((message, ()))
            return True
        if "Event" not in message:
            return False
        if message.get("EventList", "").lower() == "complete":
            self.future.set_result((self.reply, tuple(self.items)))
        else:
            self.items.append(message)
        return True


class _Link(asyncio.Protocol):
    """One TCP connection: parses what it reads and hands each message to ``dispatch``."""

    def __init__(self, parser: AmiParser, dispatch: Callable[[_Link, AmiFields], None]) -> None:
        loop = asyncio.get_running_loop()
        self.banner: asyncio.Future[str] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.pending: dict[str, _Pending] = {}
        self.reason = "connection closed by Asterisk"
        self._parser = parser
        self._dispatch = dispatch
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._parser.feed(data)
        except AmiError as exc:
            self.close(str(exc))
            return
        if not self.banner.done() and self._parser.banner is not None:
            self.banner.set_result(self._parser.banner)
        for message in messages:
            self._dispatch(self, message)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.reason = f"connection lost: {exc}"
        error = AmiConnectionLost(self.reason)
        if not self.banner.done():
            self.banner.set_exception(error)
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.set_exception(error)
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise AmiConnectionLost(self.reason)
        self._transport.write(data)

    def close(self, reason: str) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self.reason = reason
            self._transport.close()


class AmiClient(LinkStatus):
    """An AMI connection that stays up. Construct it, run `run()` as an owned task, read
    `events()` (or `queue`), call `action()`, and `close()` at shutdown.

    ``events``: event names to keep (case-insensitive); others are discarded before they are
    decoded. None keeps every event. Also filter in manager.conf (``eventfilter``) so Asterisk
    does not send what is thrown away. ``event_mask``: the ``Events`` header of the login, the
    read classes wanted (``on`` for all). ``clock`` stamps `AmiEvent.received_at`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        events: set[str] | None = None,
        event_mask: str = "call,agent,user",
        queue_size: int = 10000,
        ping_interval: float = 5.0,
        ping_timeout: float = 2.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        connect_timeout: float = 5.0,
        action_timeout: float = 10.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
        log_every: float = 600.0,
    ) -> None:
        if any(c in text for text in (username, secret, event_mask) for c in "\r\n"):
            raise ValueError("AMI username, secret and event mask must be single lines")
        self._log = logger if logger is not None else logging.getLogger(__name__)
        self._kept = KeptLink(f"AMI {host}:{port}", degraded=DEGRADED, expected=(AmiError, OSError, TimeoutError),
                              backoff_min=backoff_min, backoff_max=backoff_max, rng=rng, log=self._log,
                              log_every=log_every)
        self._inbox: EventQueue[AmiItem] = EventQueue("AMI", queue_size, self._log)
        self.queue = self._inbox.queue
        self._host = host
        self._port = port
        self._username = username
        self._secret = secret
        self._events = None if events is None else frozenset(e.lower() for e in events)
        self._event_mask = event_mask
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._connect_timeout = connect_timeout
        self._action_timeout = action_timeout
        self._clock = clock
        self._link: _Link | None = None
        self._held: list[AmiEvent] | None = None  # events read while a resync is collected
        self._next_action_id = 0

    def __repr__(self) -> str:
        return f"AmiClient({self._username}@{self._host}:{self._port}, connected={self.connected})"

    async def run(self) -> None:
        """Keep a logged-in connection until `close()`; returns then. Never raises for
        connection problems: they are logged, kept in `last_error`, and retried."""
        async with self._kept.running():
            await self._kept.keep(self._session, f"ami-{self._host}:{self._port}")

    async def close(self) -> None:
        """Stop `run()` (log off, close the socket) and wait until it has returned. A closed
        client stays closed: `run()` returns at once afterwards."""
        link = self._link
        if link is not None and self.connected:
            try:
                self._next_action_id += 1
                link.send(encode_action("Logoff", f"agid-{self._next_action_id}"))
            except AmiConnectionLost:
                pass
        await self._kept.stop()

    def events(self) -> AsyncIterator[AmiItem]:
        """Queued items in order; ends once the client is closed and the queue is empty."""
        return self._inbox.items(self._kept.stop_future())

    async def action(self, name: str, /, **fields: FieldValue) -> AmiResponse:
        """Send one action and return Asterisk's answer (and a list action's items).

        Field values may be str, int or a sequence of str (a repeated header such as
        ``Variable``). For Originate and Atxfer an ``Async: true`` header is added unless given.
        Raises AmiNotConnected, AmiActionTimeout, AmiConnectionLost, or ValueError for a
        malformed header (``Action`` and ``ActionID`` are the client's).
        """
        link = self._link
        if link is None or not self.connected:
            raise AmiNotConnected(f"AMI {self._host}:{self._port} is not connected")
        headers: dict[str, str | Sequence[str]] = {}
        for key, value in fields.items():
            if key.lower() in ("action", "actionid"):
                raise ValueError(f"{key} is set by the AMI client")
            headers[key] = str(value) if isinstance(value, int) else value
        if name.lower() in QUEUED_ACTIONS and not any(k.lower() == "async" for k in headers):
            headers["Async"] = "true"
        reply, items = await self._request(link, name, headers, self._action_timeout)
        now = self._clock()
        events = tuple(AmiEvent(item.get("Event", ""), item, now) for item in items)
        return AmiResponse(_succeeded(reply), reply, events)

    # -- one connection ------------------------------------------------------------------

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        self._log.debug("AMI %s:%d: connecting", self._host, self._port)
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, link = await loop.create_connection(
                    lambda: _Link(self._new_parser(), self._dispatch), self._host, self._port)
        except TimeoutError:
            raise AmiConnectionLost(f"no TCP connection within {self._connect_timeout:g} s") from None
        self._link = link
        self._held = []  # events can come in the same read as the login answer
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    banner = await link.banner
            except TimeoutError:
                raise AmiProtocolError(f"connected, but no AMI banner within {self._connect_timeout:g} s "
                                       "(a silent peer: is this Asterisk's manager port?)") from None
            reply, _ = await self._request(link, "Login", {
                "Username": self._username, "Secret": self._secret, "Events": self._event_mask,
            }, self._action_timeout)
            if not _succeeded(reply):
                raise AmiAuthError(f"login refused for user {self._username!r}: "
                                   f"{reply.get('Message', 'no reason given')}")
            self._kept.connected = True
            self._log.info("AMI %s:%d: logged in as %s (%s, events %s)", self._host, self._port,
                           self._username, banner, self._event_mask)
            self._inbox.resynced()  # a resync dropped itself counts: retried
            await self._resync(link)
            resumed = self._kept.up()
            if resumed:
                self._log.info("AMI %s:%d: %s", self._host, self._port, resumed)
            await self._keepalive(link)
        finally:
            self._kept.connected = False
            self._held = None
            self._link = None
            link.close("AMI client closed the connection")

    async def _resync(self, link: _Link) -> None:
        reply, items = await self._request(link, "CoreShowChannels", {}, self._action_timeout)
        if _succeeded(reply):
            channels = tuple(ChannelSnapshot.from_fields(item) for item in items
                             if item.get("Event", "").lower() == "coreshowchannel")
            self._log.info("AMI %s:%d: resync with %d live channels",
                           self._host, self._port, len(channels))
            self._inbox.offer(AmiResync(channels, self._clock()))
        else:
            self._kept.last_error = f"CoreShowChannels refused: {reply.get('Message', '')}"
            self._log.error("AMI %s:%d: %s; live calls not resynchronised (the AMI user "
                            "needs write=reporting or write=system)",
                            self._host, self._port, self._kept.last_error)
        held, self._held = self._held or [], None
        for event in held:
            self._inbox.offer(event)

    async def _keepalive(self, link: _Link) -> None:
        missed = 0
        while True:
            done, _ = await asyncio.wait({link.lost}, timeout=self._ping_interval)
            if done:
                raise AmiConnectionLost(link.reason)
            try:
                reply, _ = await self._request(link, "Ping", {}, self._ping_timeout)
            except AmiActionTimeout:
                answered = False
            else:
                answered = _succeeded(reply) and reply.get("Ping", "").lower() == "pong"
            if answered:
                missed = 0
                if self._inbox.lost_since_resync:
                    # Events were lost (a Hangup among them would leave a call open forever):
                    # once the consumer has caught up, read the live channels again, as after
                    # a reconnect.
                    self._inbox.resynced()
                    self._held = []
                    await self._resync(link)
                continue
            missed += 1
            self._log.warning("AMI %s:%d: ping unanswered (%d in a row)",
                              self._host, self._port, missed)
            if missed >= MISSED_PINGS_LIMIT:
                link.close(f"no answer to {missed} pings in a row")
                raise AmiConnectionLost(link.reason)

    async def _request(self, link: _Link, name: str, fields: dict[str, str | Sequence[str]],
                       timeout: float) -> _Reply:
        self._next_action_id += 1
        action_id = f"agid-{self._next_action_id}"
        pending = _Pending(asyncio.get_running_loop().create_future())
        data = encode_action(name, action_id, fields)  # holds the secret for Login: never logged
        link.pending[action_id] = pending
        try:
            link.send(data)
            async with asyncio.timeout(timeout):
                return await pending.future
        except TimeoutError:
            raise AmiActionTimeout(f"AMI {name}: no answer within {timeout} s") from None
        finally:
            del link.pending[action_id]

    # -- synchronous, inside data_received --------------------------------------------

    def _new_parser(self) -> AmiParser:
        wanted = None if self._events is None else self._wanted
        return AmiParser(wanted=wanted)

    def _wanted(self, name: str) -> bool:
        assert self._events is not None
        return name.lower() in self._events

    def _dispatch(self, link: _Link, message: AmiFields) -> None:
        action_id = message.get("ActionID")
        if action_id is not None:
            pending = link.pending.get(action_id)
            if pending is not None and pending.feed(message):
                return
        name = message.get("Event")
        if name is None or (self._events is not None and name.lower() not in self._events):
            return  # a late answer to a timed-out action, or an unwanted event
        event = AmiEvent(name, message, self._clock())
        held = self._held
        if held is None:
            self._inbox.offer(event)
        elif len(held) < self.queue.maxsize:
            held.append(event)
        else:
            self._inbox.count_drop()


def _succeeded(reply: AmiFields) -> bool:
    return reply.get("Response", "").lower() in _SUCCESS

