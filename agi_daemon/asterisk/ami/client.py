"""The AMI connection: login, keepalive, reconnection, resync, actions and the event queue.

`AmiClient.run()` is one long-running coroutine that the application owns (in its TaskGroup).
It repeats: connect, read the banner, ``Login`` with an event mask, ``CoreShowChannels`` to
publish an `AmiResync`, then ``Ping`` every ``ping_interval`` until the link dies; then it
waits a backoff delay and starts again. Each connection runs in one child task that `run()`
creates and awaits, so nothing outlives it.

Events are parsed and filtered inside the protocol's ``data_received`` and put on a bounded
`asyncio.Queue` synchronously: reading never waits on the consumer. When the queue is full the
event is counted in `dropped` (and logged at most once a second); the tracker resyncs anyway
after a reconnect, so a slow consumer degrades call records, never the socket.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence

from .backoff import backoff_delay
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


class AmiClient:
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
        if not 0 < backoff_min <= backoff_max:
            raise ValueError("AMI backoff needs 0 < backoff_min <= backoff_max")
        if any(c in text for text in (username, secret, event_mask) for c in "\r\n"):
            raise ValueError("AMI username, secret and event mask must be single lines")
        if queue_size < 1:
            raise ValueError("AMI queue_size must be at least 1")
        self.queue: asyncio.Queue[AmiItem] = asyncio.Queue(maxsize=queue_size)
        self._host = host
        self._port = port
        self._username = username
        self._secret = secret
        self._events = None if events is None else frozenset(e.lower() for e in events)
        self._event_mask = event_mask
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._connect_timeout = connect_timeout
        self._action_timeout = action_timeout
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._log = logger if logger is not None else logging.getLogger(__name__)
        self._link: _Link | None = None
        self._held: list[AmiEvent] | None = None  # events read while a resync is collected
        self._stop: asyncio.Future[None] | None = None
        self._readers: set[asyncio.Future[None]] = set()  # events() waiting for an item
        self._running = False
        self._stopped = asyncio.Event()  # set whenever run() is not running
        self._stopped.set()
        self._connected = False
        self._logins = 0
        self._attempt = 0
        self._next_action_id = 0
        self._dropped = 0
        self._dropped_at_resync = 0  # the drop count at the last resync
        self._drop_logged_at = float("-inf")
        self._last_error: str | None = None
        self._log_every = log_every  # an outage that lasts is logged again at most this often
        self._down_since: float | None = None  # loop time of the first failure of this outage
        self._outage_logged: tuple[float, str] | None = None  # (loop time, reason) last logged

    def __repr__(self) -> str:
        return f"AmiClient({self._username}@{self._host}:{self._port}, connected={self._connected})"

    @property
    def connected(self) -> bool:
        """True while logged in."""
        return self._connected

    @property
    def reconnects(self) -> int:
        """Successful logins after the first one."""
        return max(0, self._logins - 1)

    @property
    def dropped(self) -> int:
        """Events (and resyncs) thrown away because the queue was full."""
        return self._dropped

    @property
    def failed_attempts(self) -> int:
        """Connection attempts failed in a row (0 while logged in)."""
        return self._attempt

    @property
    def last_error(self) -> str | None:
        """The most recent connection failure, kept after recovery; None if there was none."""
        return self._last_error

    async def run(self) -> None:
        """Keep a logged-in connection until `close()`; returns then. Never raises for
        connection problems: they are logged, kept in `last_error`, and retried."""
        if self._running:
            raise RuntimeError("AmiClient.run() is already running")
        self._running = True
        self._stopped.clear()
        stop = self._stop_future()
        try:
            while not stop.done():
                session = asyncio.create_task(self._session(),
                                              name=f"ami-{self._host}:{self._port}")
                try:
                    await asyncio.wait({session, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not session.done():
                        session.cancel()
                        await asyncio.wait({session})
                error = None if session.cancelled() else session.exception()
                if stop.done():
                    break
                delay = backoff_delay(self._attempt, rng=self._rng,
                                      minimum=self._backoff_min, maximum=self._backoff_max)
                self._attempt += 1
                self._note_failure(error, delay)
                await asyncio.wait({stop}, timeout=delay)
        finally:
            self._running = False
            self._connected = False
            self._stopped.set()

    async def close(self) -> None:
        """Stop `run()` (log off, close the socket) and wait until it has returned. A closed
        client stays closed: `run()` returns at once afterwards."""
        link = self._link
        if link is not None and self._connected:
            try:
                self._next_action_id += 1
                link.send(encode_action("Logoff", f"agid-{self._next_action_id}"))
            except AmiConnectionLost:
                pass
        stop = self._stop_future()
        if not stop.done():
            stop.set_result(None)
        self._wake_readers()
        await self._stopped.wait()

    async def events(self) -> AsyncIterator[AmiItem]:
        """Queued items in order; ends once the client is closed and the queue is empty."""
        stop = self._stop_future()
        queue, loop = self.queue, asyncio.get_running_loop()
        while True:
            try:
                yield queue.get_nowait()
                continue
            except asyncio.QueueEmpty:
                if stop.done():
                    return
            # One future, answered by the next item offered or by close(): events come one
            # burst at a time, and a task plus asyncio.wait per burst cost more than the event.
            waiter: asyncio.Future[None] = loop.create_future()
            self._readers.add(waiter)
            try:
                await waiter
            finally:
                self._readers.discard(waiter)

    async def action(self, name: str, /, **fields: FieldValue) -> AmiResponse:
        """Send one action and return Asterisk's answer (and a list action's items).

        Field values may be str, int or a sequence of str (a repeated header such as
        ``Variable``). For Originate and Atxfer an ``Async: true`` header is added unless given.
        Raises AmiNotConnected, AmiActionTimeout, AmiConnectionLost, or ValueError for a
        malformed header (``Action`` and ``ActionID`` are the client's).
        """
        link = self._link
        if link is None or not self._connected:
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
            self._attempt = 0
            self._logins += 1
            self._connected = True
            resumed = ""
            if self._down_since is not None:
                down = asyncio.get_running_loop().time() - self._down_since
                resumed = f"; call tracking resumed after {down:.0f} s"
                self._down_since = self._outage_logged = None
            self._log.info("AMI %s:%d: logged in as %s (%s, events %s)%s", self._host, self._port,
                           self._username, banner, self._event_mask, resumed)
            self._dropped_at_resync = self._dropped  # a resync dropped itself counts: retried
            await self._resync(link)
            await self._keepalive(link)
        finally:
            self._connected = False
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
            self._offer(AmiResync(channels, self._clock()))
        else:
            self._last_error = f"CoreShowChannels refused: {reply.get('Message', '')}"
            self._log.error("AMI %s:%d: %s; live calls not resynchronised (the AMI user "
                            "needs write=reporting or write=system)",
                            self._host, self._port, self._last_error)
        held, self._held = self._held or [], None
        for event in held:
            self._offer(event)

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
                if self._dropped > self._dropped_at_resync and self.queue.qsize() < self.queue.maxsize // 2:
                    # Events were lost (a Hangup among them would leave a call open forever):
                    # once the consumer has caught up, read the live channels again, as after
                    # a reconnect.
                    self._dropped_at_resync = self._dropped
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
            self._offer(event)
        elif len(held) < self.queue.maxsize:
            held.append(event)
        else:
            self._count_drop()

    def _offer(self, item: AmiItem) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self._count_drop()
            return
        self._wake_readers()

    def _wake_readers(self) -> None:
        for waiter in self._readers:
            if not waiter.done():
                waiter.set_result(None)

    def _count_drop(self) -> None:
        self._dropped += 1
        now = time.monotonic()
        if now - self._drop_logged_at >= 1.0:
            self._drop_logged_at = now
            self._log.warning("AMI event queue full (%d items): %d events dropped so far",
                              self.queue.maxsize, self._dropped)

    # -- helpers ---------------------------------------------------------------------------

    def _stop_future(self) -> asyncio.Future[None]:
        if self._stop is None:
            self._stop = asyncio.get_running_loop().create_future()
        return self._stop

    def _note_failure(self, error: BaseException | None, retry_in: float) -> None:
        """One line for an outage, saying what is degraded; again when the reason changes or
        every `log_every` seconds while it lasts (not once per retry); the rest at debug."""
        reason = "connection closed" if error is None else _describe(error)
        self._last_error = reason
        if error is not None and not isinstance(error, (AmiError, OSError, TimeoutError)):
            self._log.error("AMI %s:%d: unexpected failure", self._host, self._port, exc_info=error)
        now = asyncio.get_running_loop().time()
        if self._down_since is None:
            self._down_since = now
        last = self._outage_logged
        if last is not None and last[1] == reason and now - last[0] < self._log_every:
            self._log.debug("AMI %s:%d: %s; retrying in %.1f s", self._host, self._port, reason, retry_in)
            return
        self._outage_logged = (now, reason)
        still = "" if last is None else f"still down after {now - self._down_since:.0f} s and {self._attempt} attempts, "
        self._log.warning("AMI %s:%d: %s%s; call tracking paused (transfers and call details wait, "
                          "hangup reports still log calls); calls are still routed; retrying in %.1f s "
                          "(backoff up to %g s)", self._host, self._port, still, reason, retry_in, self._backoff_max)


def _succeeded(reply: AmiFields) -> bool:
    return reply.get("Response", "").lower() in _SUCCESS


def _describe(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, TimeoutError) and not text:
        text = "timed out"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
