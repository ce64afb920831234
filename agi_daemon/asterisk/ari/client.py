"""The ARI connection: the events WebSocket (reconnected with backoff and jitter, resynced from
GET /channels and GET /bridges after each connection) and REST requests, on aiohttp.

`AriClient.run()` is one long-running coroutine that the application owns (in its TaskGroup).
It repeats: open the WebSocket ``/ari/events?app=<app>``, subscribe the application to every
channel, bridge and endpoint (``POST /applications/<app>/subscription``: not only those in the
application, so outgoing calls that never enter the daemon's contexts are tracked too; not
`subscribeAll`, see `ALL_SOURCES`), ask Asterisk to send only the event types wanted
(``PUT /applications/<app>/eventFilter``), take the snapshot, then read until the socket dies;
then it waits a backoff delay and starts again. While Asterisk boots, ARI answers 503: that is
one more failed attempt, retried the same way. aiohttp's WebSocket heartbeat (a ping every
`heartbeat` seconds, the link closed when the pong does not come) detects a silent half-open link.

Credentials go in the Authorization header (HTTP Basic), never in a URL: URLs are logged.

Events are decoded and sorted in the reader, synchronously:
- `app_types` (StasisStart, the hangup handler's user event) go to the `application` at once:
  a call waiting in Stasis must not queue behind call tracking;
- `event_types` go on a bounded queue for call tracking; when it is full the event is counted
  in `dropped` (logged at most once a second), and once the consumer has caught up a new
  snapshot is published, as after a reconnect;
- the snapshot (`AriResync`) goes to both.

At `close()`, once the WebSocket is closed (Asterisk deactivates the application: new calls'
Stasis() fail at once), the application's `at_close` runs while REST still works: it sends
on the channels still waiting in it, so that stopping the daemon leaves no call in Stasis.

The reconnecting loop, its outage logging (one line per outage, not one per retry) and the
queue are shared with the AMI client (`agi_daemon.asterisk.link`).
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..link import EventQueue, KeptLink, LinkStatus
from .errors import AriError, AriRefused, AriUnavailable
from .model import AriEvent, AriItem, AriResync



# What an ARI outage stops, and what still works, in the line that reports it
# (the hangup reports come over ARI too: unlike over FastAGI+AMI, none arrives meanwhile)
DEGRADED = ("call tracking and hangup reports paused (a call that ends meanwhile is logged from what tracking "
            "saw of it); calls sent to Stasis() meanwhile take the dialplan's fallback routes and are not logged")


class AriApplication(Protocol):
    """What runs the Stasis application over this client (agi_daemon/asterisk/routes/stasis.py)."""

    def handle(self, item: AriItem) -> None:
        """An application event or a snapshot, from the reader: must not wait."""

    async def at_close(self) -> None:
        """The last requests before the client closes (the WebSocket already is)."""


# What the application subscribes to: every channel, bridge and endpoint (an empty id is all of
# them). Not `subscribeAll=true`, which also subscribes it to every device state: Asterisk (at
# least 20.16 and 22.10) can deadlock its ARI when the events WebSocket of an application
# subscribed to device states closes while one is being sent to it (the teardown holds the
# session's lock and waits for that send, which waits for the lock: asterisk/asterisk#2170);
# every later events WebSocket then hangs until Asterisk restarts. Tracking reads no device state.
ALL_SOURCES = "channel:,bridge:,endpoint:"


class AriClient(LinkStatus):
    """Construct it, run `run()` as an owned task, read `events()`, call `request()`, and
    `close()` at shutdown."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        app: str,
        *,
        event_types: frozenset[str],
        app_types: frozenset[str] = frozenset(),
        queue_size: int = 10000,
        heartbeat: float = 5.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        connect_timeout: float = 5.0,
        request_timeout: float = 5.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
        log_every: float = 600.0,
    ) -> None:
        self._base = without_userinfo(url).rstrip("/") + "/ari"  # logged: never credentials
        self._log = logger if logger is not None else logging.getLogger(__name__)
        self._kept = KeptLink(f"ARI {self._base}", degraded=DEGRADED,
                              expected=(AriError, aiohttp.ClientError, OSError, TimeoutError),
                              backoff_min=backoff_min, backoff_max=backoff_max, rng=rng, log=self._log,
                              log_every=log_every)
        self._inbox: EventQueue[AriItem] = EventQueue("ARI", queue_size, self._log)
        self.queue = self._inbox.queue
        self.app = app
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}  # HTTP Basic, in a header only
        self._username = username
        self._event_types = event_types
        self._app_types = app_types
        self.application: AriApplication | None = None  # set before run(), if the daemon routes over ARI
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._clock = clock
        self._http: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"AriClient({self._username}@{self._base}, app={self.app}, connected={self.connected})"

    # -- life cycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the events WebSocket open until `close()`. Never raises for connection
        problems: they are logged, kept in `last_error`, and retried."""
        async with self._kept.running():
            self._http = aiohttp.ClientSession(headers=self._headers,
                                               timeout=aiohttp.ClientTimeout(total=self._request_timeout))
            try:
                await self._kept.keep(self._session, f"ari-{self.app}")
            finally:
                self._kept.connected = False
                if self.application is not None:  # the events are off; REST still works for a last word
                    try:
                        async with asyncio.timeout(self._request_timeout):
                            await self.application.at_close()
                    except Exception:
                        self._log.exception("ARI %s: the last requests before closing failed", self._base)
                http, self._http = self._http, None
                await http.close()

    async def close(self) -> None:
        """Stop `run()` and wait until it has returned; a closed client stays closed."""
        await self._kept.stop()

    def events(self) -> AsyncIterator[AriItem]:
        """Queued items in order; ends once the client is closed and the queue is empty."""
        return self._inbox.items(self._kept.stop_future())

    # -- REST ------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None) -> Any:
        """One REST call (`path` under /ari, e.g. "/channels"); the decoded JSON answer, or None.
        Raises AriUnavailable (no answer, 503) or AriRefused (another HTTP error). A request
        sent on a kept-alive connection that had died is sent once more on a new one."""
        http = self._http
        if http is None:
            raise AriUnavailable("ARI client is not running")
        for attempt in (1, 2):
            try:
                async with http.request(method, self._base + path, params=params, json=body) as response:
                    if response.status == 503:
                        raise AriUnavailable(f"{method} {path}: Asterisk not ready (503)")
                    if response.status >= 400:
                        raise AriRefused(response.status, f"{method} {path}: {(await response.text())[:200]}")
                    if response.status == 204 or response.content_type != "application/json":
                        return None
                    return await response.json()
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt == 2:
                    raise AriUnavailable(f"{method} {path}: {exc}") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise AriUnavailable(f"{method} {path}: {type(exc).__name__} {exc}") from None
        raise AssertionError("unreachable")

    # -- one connection --------------------------------------------------------------------

    async def _session(self) -> None:
        http = self._http
        assert http is not None
        self._log.info("ARI %s: connecting (application %s)", self._base, self.app)
        try:
            async with asyncio.timeout(self._connect_timeout):
                ws = await http.ws_connect(self._base + "/events", params={"app": self.app},
                                           heartbeat=self._heartbeat, timeout=aiohttp.ClientWSTimeout(ws_close=1.0))
        except TimeoutError:
            raise AriUnavailable(await self._no_events_websocket()) from None
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 503:
                raise AriUnavailable("Asterisk not ready (503)") from None
            if exc.status in (401, 403):
                raise AriRefused(exc.status, f"login refused for user {self._username!r}") from None
            raise AriRefused(exc.status, "events WebSocket refused (ARI not loaded yet?)") from None
        try:
            await self.request("POST", f"/applications/{self.app}/subscription", params={"eventSource": ALL_SOURCES})
            await self._filter_events()
            self._log.info("ARI %s: events connected as %s (application %s)", self._base, self._username, self.app)
            await self._resync()
            resumed = self._kept.up()
            if resumed:
                self._log.info("ARI %s: %s", self._base, resumed)
            self._kept.connected = True
            while True:
                message = await ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    self._dispatch(message.data)
                    if self._inbox.lost_since_resync:
                        await self._resync()  # events were lost: read the live channels again
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    raise AriUnavailable("events WebSocket closed by Asterisk")
                elif message.type is aiohttp.WSMsgType.ERROR:
                    raise AriUnavailable(f"events WebSocket failed: {ws.exception()}")
        finally:
            self._kept.connected = False
            await ws.close()

    async def _no_events_websocket(self) -> str:
        """Why the events WebSocket did not open in time, for the admin: when ARI's REST still
        answers, the likely cause is the Asterisk deadlock this client avoids for itself
        (ALL_SOURCES), left by another ARI application of the same PBX."""
        waited = f"the events WebSocket did not open within {self._connect_timeout:g} s"
        try:
            await self.request("GET", "/asterisk/info")
        except (AriUnavailable, AriRefused):
            return waited
        return (f"{waited} while ARI's REST answers: Asterisk's ARI is probably deadlocked (asterisk/asterisk#2170, "
                f"an application subscribed to device states closed); restarting Asterisk clears it")

    async def _filter_events(self) -> None:
        """Ask Asterisk to send this application only the event types it reads."""
        wanted = sorted(self._event_types | self._app_types)
        try:
            await self.request("PUT", f"/applications/{self.app}/eventFilter",
                               body={"allowed": [{"type": name} for name in wanted]})
        except AriRefused as exc:  # older Asterisk: every event comes, the client sorts them
            self._log.warning("ARI %s: event filter refused (%s); reading every event", self._base, exc)

    async def _resync(self) -> None:
        self._inbox.resynced()
        channels = await self.request("GET", "/channels") or []
        bridges = await self.request("GET", "/bridges") or []
        snapshot = AriResync(tuple(channels), tuple(bridges), self._clock())
        self._log.info("ARI %s: resync with %d live channels, %d bridges", self._base, len(channels), len(bridges))
        if self.application is not None:
            self.application.handle(snapshot)
        self._inbox.offer(snapshot)

    def _dispatch(self, text: str) -> None:
        try:
            body = json.loads(text)
            kind = body["type"]
        except (ValueError, KeyError, TypeError):
            self._log.warning("ARI %s: unreadable event ignored", self._base)
            return
        if kind in self._app_types and self.application is not None:
            self.application.handle(AriEvent(kind, body, self._clock()))
        if kind in self._event_types:
            self._inbox.offer(AriEvent(kind, body, self._clock()))


def without_userinfo(url: str) -> str:
    """`url` without any "user:password@" (the credentials go in a header, and URLs are logged)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

