"""An asyncio FastAGI server: one protocol object per connection, one task per session.

Each connection is an asyncio.Protocol fed straight into the sans-IO codec, so a ``HANGUP``
that arrives while the handler is busy elsewhere is seen at once (``session.hung_up``) and a
silent, truncated or oversized header costs a deadline (checked by one watchdog for all
connections) and a buffer, never a blocked loop.

For each accepted connection: the peer must be in ``allowed_peers`` and the server below
``max_sessions``; the header must complete within ``header_timeout`` and the size limits; its
route must be in the route table; then the route's handler runs with an AgiSession. Whatever
happens the connection is closed at the end, and Asterisk's dialplan continues on its own.

Slow senders cannot take the sessions' place: connections still sending their header are
counted apart from sessions (``max_sessions`` counts sessions that sent theirs). Past
``max_pending_headers`` of them, or half of that from one peer, the oldest one is closed once it
has been waiting for half the header timeout, at most SLOW_HEADER_SECONDS (Asterisk sends its
header in its first write, so even a burst of its connections on a busy loop is read long
before); and never more than ``max_sessions`` wait at once. Refusals and protocol errors a flood would repeat are
logged once, then summarised with counts (RepeatedWarnings).

Logs name the peer, the route, the channel (long digit runs masked) and the uniqueid, never
the caller ID.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias, cast

from agi_daemon.asterisk.agi import codec
from agi_daemon.asterisk.agi.codec import AgiError, AgiProtocolError, AgiRequest, HangupNotice, Reply, redact
from agi_daemon.asterisk.repeated_warnings import RepeatedWarnings

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler: TypeAlias = Callable[["AgiSession"], Awaitable[None]]
Logger: TypeAlias = logging.Logger | logging.LoggerAdapter[Any]

_LOG = logging.getLogger(__name__)


class AgiChannelGone(AgiError):
    """The command cannot reach the channel: HANGUP notice, 511, lost connection, or no reply
    within the command timeout (after which the dialogue can no longer be trusted)."""


class AgiCommandFailed(AgiError):
    """Asterisk refused the command (510 unknown command, 520 bad syntax, or another code)."""

    def __init__(self, reply: Reply) -> None:
        first = reply.text.splitlines()[0] if reply.text else ""
        first = first[4:] if first[:3] == str(reply.code) and first[3:4] in (" ", "-") else first
        super().__init__(f"AGI command failed with {reply.code}: {first}")
        self.reply = reply


class AgiSession:
    """One FastAGI session as a handler sees it: the request and the commands it may send.

    Commands are sent one at a time (concurrent calls wait their turn). Each raises
    AgiChannelGone when the channel cannot be reached, AgiCommandFailed when Asterisk refuses it.
    """

    def __init__(self, request: AgiRequest, transport: asyncio.Transport, command_timeout: float) -> None:
        self.request = request
        self._transport = transport
        self._timeout = command_timeout
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future[Reply] | None = None
        self._deadline = 0.0  # loop time by which the command in flight must be answered
        self._gone: str | None = None

    @property
    def hung_up(self) -> bool:
        """True once commands can no longer reach the channel; they then raise at once."""
        return self._gone is not None

    async def set_variable(self, name: str, value: str) -> None:
        await self.execute(codec.set_variable(name, value))

    async def set_variables(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Set several variables, in one round trip (MSet) when the values allow it, else
        one SET VARIABLE each, in order."""
        command = codec.set_variables(tuple(pairs)) if len(pairs) > 1 else None
        if command is not None:
            reply = await self.execute(command)
            if reply.result == "0":
                return
            _LOG.warning("MSet answered %s on %s: setting the variables one by one", reply.result, codec.redact(self.request.channel))
        for name, value in pairs:
            await self.set_variable(name, value)

    async def get_variable(self, name: str) -> str | None:
        """The variable's value, or None when it is not set."""
        reply = await self.execute(codec.get_variable(name))
        return reply.data if reply.result == "1" else None

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.execute(codec.verbose(message, level))

    async def execute(self, command: bytes) -> Reply:
        """Send one encoded command line (see codec.encode_command) and return its 200 reply."""
        async with self._lock:
            if self._gone is not None:
                raise AgiChannelGone(self._gone)
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Reply] = loop.create_future()
            self._pending = future
            # the server's watchdog ends the session once this passes (see _overdue): one
            # periodic check for every session rather than a timer per command
            self._deadline = loop.time() + self._timeout
            self._transport.write(command)
            try:
                reply = await future
            finally:
                self._pending = None
        if reply.code == 200:
            return reply
        if reply.code == 511:
            self._end("command not permitted on a dead channel (511)")
            raise AgiChannelGone("command not permitted on a dead channel (511)")
        raise AgiCommandFailed(reply)

    def _deliver(self, reply: Reply) -> bool:
        """Hand a reply to the command waiting for it; False if none was (a protocol error)."""
        if self._gone is not None:
            return True  # late reply after a timeout or hangup: nobody waits for it any more
        if self._pending is None or self._pending.done():
            return False
        self._pending.set_result(reply)
        return True

    def _overdue(self, now: float) -> None:
        """The watchdog's check: the command in flight gets no reply in time."""
        if self._pending is not None and not self._pending.done() and now >= self._deadline:
            self._end(f"no reply within {self._timeout:g} s")

    def _end(self, reason: str) -> None:
        """No further command can reach the channel; fail the one in flight."""
        if self._gone is None:
            self._gone = reason
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(AgiChannelGone(reason))


@dataclass(frozen=True, slots=True)
class AgiServerStats:
    """Counters since start; ``active`` is the number of connections open now."""

    sessions: int  # connections accepted (peer allowed, under max_sessions)
    active: int
    refused_peers: int  # peer outside allowed_peers
    refused_busy: int  # max_sessions reached
    protocol_errors: int  # bad, oversized, truncated or late header; garbage reply
    unknown_routes: int
    handler_errors: int  # handler raised something other than AgiChannelGone
    slow_headers_closed: int = 0  # closed to make room: the oldest connections still sending their header


@dataclass(slots=True)
class _Counters:
    sessions: int = 0
    refused_peers: int = 0
    refused_busy: int = 0
    protocol_errors: int = 0
    unknown_routes: int = 0
    handler_errors: int = 0
    slow_headers_closed: int = 0


class FastAgiServer:
    """Serves FastAGI routes: ``agi://host:port/<route>`` runs ``routes[route](session)``.

    ``allowed_peers`` lists the networks Asterisk connects from; any other peer is closed at
    once (an empty list refuses everyone). A handler should answer quickly and on its own
    deadline: Asterisk waits for the next command without any timeout.
    """

    def __init__(
        self,
        routes: Mapping[str, Handler],
        *,
        allowed_peers: Iterable[Network | str],
        max_header_bytes: int = codec.DEFAULT_MAX_HEADER_BYTES,
        max_header_lines: int = codec.DEFAULT_MAX_HEADER_LINES,
        header_timeout: float = 2.0,
        command_timeout: float = 5.0,
        max_sessions: int = 1000,
        max_pending_headers: int | None = None,
        logger: Logger = _LOG,
    ) -> None:
        self._routes = MappingProxyType(dict(routes))
        self._allowed = tuple(ipaddress.ip_network(peer) for peer in allowed_peers)
        self._peers: dict[str, bool] = {}  # peer address -> allowed
        self._max_header_bytes = max_header_bytes
        self._max_header_lines = max_header_lines
        self._header_timeout = header_timeout
        self._command_timeout = command_timeout
        self._max_sessions = max_sessions
        self._headers = _PendingHeaders(max_pending_headers or max(2, min(max_sessions, 256)), max_sessions,
                                        slow_after=min(SLOW_HEADER_SECONDS, header_timeout / 2))
        self._log = logger
        self._warnings = RepeatedWarnings(logger)
        self._server: asyncio.Server | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        # how often the watchdog looks for late headers and unanswered commands
        self._watch_every = max(0.02, min(0.25, header_timeout / 4, command_timeout / 4))
        self._port: int | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._counters = _Counters()

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful after ``start(host, 0)``)."""
        if self._port is None:
            raise RuntimeError("the FastAGI server is not started")
        return self._port

    @property
    def serving(self) -> bool:
        """True while the server accepts connections (what /healthz reports)."""
        return self._server is not None and self._server.is_serving()

    async def start(self, host: str, port: int) -> None:
        if self._server is not None:
            raise RuntimeError("the FastAGI server is already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=1024)
        self._port = self._server.sockets[0].getsockname()[1]
        self._log.info("FastAGI listening on %s:%d, routes: %s", host, self._port, ", ".join(self._routes))

    async def close(self, timeout: float = 5.0) -> None:
        """Stop accepting; close connections still reading their header; give running
        sessions up to ``timeout`` seconds, then cancel them."""
        if self._server is None:
            return
        self._server.close()
        self._warnings.flush()
        for connection in [c for c in self._connections if c.task is None]:
            connection.close()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                self._log.warning("FastAGI: cancelled %d sessions still running at shutdown", len(late))
                await asyncio.gather(*late, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def stats(self) -> AgiServerStats:
        c = self._counters
        return AgiServerStats(
            sessions=c.sessions,
            active=len(self._connections),
            refused_peers=c.refused_peers,
            refused_busy=c.refused_busy,
            protocol_errors=c.protocol_errors,
            unknown_routes=c.unknown_routes,
            handler_errors=c.handler_errors,
            slow_headers_closed=c.slow_headers_closed,
        )

    def _watch(self) -> None:
        """Every `_watch_every` seconds while connections are open: close the connections whose
        header is late, end the sessions whose command is unanswered past the command timeout.
        With none open it sleeps until the next one is admitted: an idle daemon never wakes."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in list(self._connections):
            connection.check(now)
        self._watchdog = loop.call_later(self._watch_every, self._watch) if self._connections else None

    # Called by _Connection.

    def _admit(self, connection: _Connection, peer: str) -> bool:
        if not self._peer_allowed(peer):
            self._counters.refused_peers += 1
            self._warnings.warning("refused-peer", "FastAGI: refused connection from %s (not in allowed_peers)", peer)
            return False
        if not self._below_max_sessions(peer):
            return False
        admitted, evicted = self._headers.make_room(connection, peer, asyncio.get_running_loop().time())
        for oldest in evicted:
            self._counters.slow_headers_closed += 1
            self._warnings.warning(
                "slow-header", "FastAGI: closed a connection from %s still sending its header, to make room "
                "(at most %d connections may be sending theirs, half of them from one host)",
                oldest.peer, self._headers.limit)
            oldest.close()
        if not admitted:
            self._counters.refused_busy += 1
            self._warnings.warning("refused-busy", "FastAGI: refused connection from %s (%d connections still "
                                   "sending their header)", peer, self._max_sessions)
            return False
        self._counters.sessions += 1
        self._connections.add(connection)
        if self._watchdog is None and self._server is not None:
            self._watchdog = asyncio.get_running_loop().call_later(self._watch_every, self._watch)
        return True

    def _below_max_sessions(self, peer: str) -> bool:
        """Whether one more session may run (connections still sending their header do not count)."""
        if len(self._tasks) < self._max_sessions:
            return True
        self._counters.refused_busy += 1
        self._warnings.warning("refused-busy", "FastAGI: refused connection from %s (%d sessions open)",
                               peer, self._max_sessions)
        return False

    def _peer_allowed(self, peer: str) -> bool:
        """Whether the peer address is in allowed_peers; remembered per address (Asterisk
        servers are few, and every session of theirs asks)."""
        known = self._peers.get(peer)
        if known is None:
            known = self._check_peer(peer)
            if len(self._peers) >= 1024:
                self._peers.clear()
            self._peers[peer] = known
        return known

    def _check_peer(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == net.version and address in net for net in self._allowed)

    def _protocol_error(self, peer: str, error: str) -> None:
        self._counters.protocol_errors += 1
        self._warnings.warning("protocol-error", "FastAGI: closing connection from %s: %s", peer, error)

    def _open_session(self, connection: _Connection, request: AgiRequest, transport: asyncio.Transport) -> AgiSession | None:
        self._headers.done(connection)
        if not self._below_max_sessions(connection.peer):
            return None
        handler = self._routes.get(request.route)
        if handler is None:
            self._counters.unknown_routes += 1
            self._log.warning(
                "FastAGI: unknown route %r (channel %s, uniqueid %s)",
                request.route, redact(request.channel), request.uniqueid,
            )
            return None
        session = AgiSession(request, transport, self._command_timeout)
        task = asyncio.get_running_loop().create_task(self._serve(connection, session, handler))
        connection.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return session

    async def _serve(self, connection: _Connection, session: AgiSession, handler: Handler) -> None:
        request = session.request
        try:
            await handler(session)
        except AgiChannelGone as exc:
            self._log.info(
                "FastAGI route %s: channel gone (%s), channel %s, uniqueid %s",
                request.route, exc, redact(request.channel), request.uniqueid,
            )
        except asyncio.CancelledError:
            self._log.warning("FastAGI route %s cancelled, uniqueid %s", request.route, request.uniqueid)
            raise
        except AgiCommandFailed as exc:  # Asterisk's 510/520: said in one line, not a traceback
            self._counters.handler_errors += 1
            self._log.error("FastAGI route %s: Asterisk refused a command: %s (channel %s, uniqueid %s)",
                            request.route, exc, redact(request.channel), request.uniqueid)
        except Exception:
            self._counters.handler_errors += 1
            self._log.exception(
                "FastAGI route %s failed, channel %s, uniqueid %s",
                request.route, redact(request.channel), request.uniqueid,
            )
        finally:
            session._end("session finished")
            connection.close()
            self._release(connection)

    def _release(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        self._headers.done(connection)


SLOW_HEADER_SECONDS = 1.0
"""How long a connection may have been sending its header before it can be closed to make room
(or half the header timeout, when shorter)."""


class _PendingHeaders:
    """The connections still sending their header, oldest first, in all and by peer, with
    when each was accepted."""

    def __init__(self, limit: int, hard_limit: int, *, slow_after: float) -> None:
        self.limit = limit
        self._slow_after = slow_after
        self._per_peer = max(1, limit // 2)
        self._hard_limit = hard_limit
        self._all: dict[_Connection, float] = {}  # insertion order: oldest first
        self._by_peer: dict[str, dict[_Connection, float]] = {}

    def make_room(self, connection: _Connection, peer: str, now: float) -> tuple[bool, list[_Connection]]:
        """(whether `connection` is counted in or must be refused for want of room, the slow
        ones to close so that the bounds hold)."""
        mine = self._by_peer.get(peer, {})
        crowded = mine if len(mine) >= self._per_peer else self._all if len(self._all) >= self.limit else None
        evicted = []
        if crowded:
            oldest, since = next(iter(crowded.items()))
            if now - since >= self._slow_after:
                evicted.append(oldest)
                self.done(oldest)
        if len(self._all) >= self._hard_limit:
            return False, evicted
        self._all[connection] = now
        self._by_peer.setdefault(peer, {})[connection] = now
        return True, evicted

    def done(self, connection: _Connection) -> None:
        """The connection sent its header, or is closed."""
        if connection not in self._all:
            return
        del self._all[connection]
        mine = self._by_peer.get(connection.peer, {})
        mine.pop(connection, None)
        if not mine:
            self._by_peer.pop(connection.peer, None)


class _Connection(asyncio.Protocol):
    """One TCP connection: header phase (HeaderParser, timer), then session phase (ReplyParser)."""

    def __init__(self, server: FastAgiServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self.peer = "?"
        self._admitted = False
        self._header_deadline = 0.0  # loop time
        self._header = codec.HeaderParser(
            max_header_bytes=server._max_header_bytes, max_header_lines=server._max_header_lines
        )
        self._replies: codec.ReplyParser | None = None
        self._session: AgiSession | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if peername else "?"
        if not self._server._admit(self, self.peer):
            transport.close()
            return
        self._admitted = True
        self._header_deadline = asyncio.get_running_loop().time() + self._server._header_timeout

    def data_received(self, data: bytes) -> None:
        if not self._admitted or self._transport is None or self._transport.is_closing():
            return
        if self._session is None:
            self._read_header(data)
        else:
            self._read_replies(data)

    def eof_received(self) -> bool | None:
        if self._session is None:
            try:
                self._header.eof()
            except AgiProtocolError as exc:
                self._fail(str(exc))
        else:
            self._session._end("connection closed by Asterisk")
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._session is not None:
            self._session._end("connection lost")
        if self._admitted and self.task is None:
            self._server._release(self)

    def close(self) -> None:
        """Close the socket; a connection without a session task is done at once."""
        if self._transport is not None:
            self._transport.close()
        if self._admitted and self.task is None:
            self._server._release(self)

    def _read_header(self, data: bytes) -> None:
        try:
            request = self._header.feed(data)
        except AgiProtocolError as exc:
            self._fail(str(exc))
            return
        if request is None:
            return
        assert self._transport is not None
        self._session = self._server._open_session(self, request, self._transport)
        if self._session is None:
            self.close()
        elif self._header.remainder:
            self._read_replies(self._header.remainder)

    def _read_replies(self, data: bytes) -> None:
        assert self._session is not None
        if self._replies is None:
            self._replies = codec.ReplyParser()
        try:
            items = self._replies.feed(data)
        except AgiProtocolError as exc:
            self._session._end(f"protocol error: {exc}")
            self._fail(str(exc))
            return
        for item in items:
            if isinstance(item, HangupNotice):
                self._session._end("channel hung up (HANGUP)")
            elif not self._session._deliver(item):
                self._session._end("unexpected reply")
                self._fail(f"reply {item.code} with no command waiting for it")
                return

    def check(self, now: float) -> None:
        """The server's watchdog: a header late, or a command unanswered, ends the connection."""
        if self._session is not None:
            self._session._overdue(now)
        elif now >= self._header_deadline and self._transport is not None and not self._transport.is_closing():
            self._fail(f"header not complete within {self._server._header_timeout:g} s")

    def _fail(self, error: str) -> None:
        self._server._protocol_error(self.peer, error)
        self.close()
