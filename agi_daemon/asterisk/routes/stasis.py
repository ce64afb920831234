"""The daemon's Stasis application (the routes of the Stasis dialplan): routing and the hangup report over ARI, with the same
services and the same channel variables as the FastAGI routes.

dialplan/agi-daemon-stasis.conf runs ``Stasis(<app>,incoming|outgoing,${CHANNEL(linkedid)})``
in agi-daemon-incoming / -outgoing. For each StasisStart the daemon asks the routing service
(EXTEN and caller ID read from the channel, as AGI reads them from its request), sets the
AGI_DAEMON_* variables the decision names (routes/answer.py `assignments`, status last) and
sends the channel on (``continueInDialplan``): the next priority dials through
agi-daemon-dial.conf, as after the FastAGI route. A call never stays in Stasis: on any error,
or when the decision is not ready within `deadline` seconds, the status is "error" and the
channel goes on to the fallback. Channels found waiting in the application after a
(re)connection (their StasisStart was lost with the link) go on to the fallback, once their
StasisStart has had `deadline` seconds to arrive: the snapshot is taken while the events that
came since the WebSocket opened still wait, unread, behind it.

The hangup handler of that dialplan sends the user event AgiDaemonCallEnd with the fields of
the FastAGI route call-end (variables.CALL_END_ARGS, by name): the same `hangup_report`, the
same call log.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ...core.decisions import RoutingStatus
from ...core.model import Direction
from ...core.rules import CallEntry
from ...services.call_log import CallLogService
from ...services.pending import PendingWork
from .. import variables as v
from ..ari.errors import AriError, AriRefused
from ..ari.model import AriEvent, AriItem, AriResync, Json
from ..ari.translate import LINKEDID_VAR
from .answer import assignments
from .call_end import hangup_report
from .routing import Router

log = logging.getLogger(__name__)

APP_EVENT_TYPES = frozenset({"StasisStart", "ChannelUserevent"})
SEEN_KEPT = 10_000  # channels remembered as started: far beyond the calls a resync can find waiting
_DIRECTIONS = {Direction.INCOMING.value: Direction.INCOMING, Direction.OUTGOING.value: Direction.OUTGOING}


class AriRequests(Protocol):
    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      body: object = None) -> object: ...


class StasisRouting:
    def __init__(self, ari: AriRequests, app: str, routing: Router, call_log: CallLogService,
                 pending: PendingWork, *, deadline: float) -> None:
        """`deadline`: seconds a channel may wait in Stasis for its decision (crm_deadline_ms,
        plus the time to decide)."""
        self._ari = ari
        self._app = app
        self._routing = routing
        self._call_log = call_log
        self._pending = pending
        self._deadline = deadline
        self._in_hand: dict[str, asyncio.Task[None]] = {}  # channels being routed now
        self._started_lately: dict[str, None] = {}  # channels whose StasisStart was read (the last SEEN_KEPT)
        self.routed = 0

    @property
    def deciding(self) -> int:
        """Channels in Stasis whose routing answer is being worked out now."""
        return len(self._in_hand)

    def handle(self, item: AriItem) -> None:
        """From the ARI reader, synchronously: start the work, never wait here."""
        if isinstance(item, AriResync):
            self._release_waiting(item.channels)
        elif item.type == "StasisStart":
            self._started(item)
        elif item.type == "ChannelUserevent" and item.body.get("eventname") == v.CALL_END_EVENT:
            self._call_ended(item)

    def _started(self, event: AriEvent) -> None:
        channel: Json = event.body.get("channel") or {}
        channel_id = channel.get("id") or ""
        args = list(event.body.get("args") or ())
        direction = _DIRECTIONS.get(args[0]) if args else None
        if not channel_id or direction is None:
            log.warning("Stasis %s: channel %s entered without incoming|outgoing; sent on to the fallback",
                        self._app, channel_id or "?")
            if channel_id:
                self._pending.start(f"stasis:{channel_id}", self._answer(channel_id, [(v.STATUS, RoutingStatus.ERROR.value)]))
            return
        self._started_lately[channel_id] = None
        if len(self._started_lately) > SEEN_KEPT:
            del self._started_lately[next(iter(self._started_lately))]
        dialplan = channel.get("dialplan") or {}
        entry = CallEntry(direction, dialplan.get("exten") or "", (channel.get("caller") or {}).get("number") or "")
        linkedid = (args[1] if len(args) > 1 else "") or (channel.get("channelvars") or {}).get(LINKEDID_VAR) or channel_id
        self._in_hand[channel_id] = self._pending.start(f"stasis:{channel_id}", self._route(channel_id, entry, linkedid))

    async def _route(self, channel_id: str, entry: CallEntry, linkedid: str) -> None:
        try:
            try:
                async with asyncio.timeout(self._deadline):
                    decision = await self._routing.route(entry, linkedid)
                pairs = assignments(decision)
            except TimeoutError:
                log.warning("call %s: no routing decision within %.0f ms, the dialplan falls back",
                            linkedid, self._deadline * 1000)
                pairs = [(v.STATUS, RoutingStatus.ERROR.value)]
            except Exception:
                log.exception("call %s: %s routing failed, the dialplan falls back", linkedid, entry.direction.value)
                pairs = [(v.STATUS, RoutingStatus.ERROR.value)]
            await self._answer(channel_id, pairs)
            self.routed += 1
        finally:
            self._in_hand.pop(channel_id, None)

    async def _answer(self, channel_id: str, pairs: list[tuple[str, str]]) -> None:
        """Set the variables (status last), then send the channel on in the dialplan."""
        try:
            for name, value in pairs:
                await self._ari.request("POST", f"/channels/{channel_id}/variable",
                                        params={"variable": name, "value": value})
            await self._ari.request("POST", f"/channels/{channel_id}/continue")
        except AriRefused as exc:
            if exc.status == 404:  # the caller hung up meanwhile
                log.info("channel %s left before its routing answer", channel_id)
                return
            self._started_lately.pop(channel_id, None)  # still waiting: the next resync sends it on
            log.error("channel %s: ARI refused the routing answer (%s)", channel_id, exc)
        except AriError as exc:
            self._started_lately.pop(channel_id, None)
            log.error("channel %s: routing answer not delivered (%s); it goes on at the next resync", channel_id, exc)

    def _release_waiting(self, channels: tuple[Json, ...]) -> None:
        for channel_id in self._waiting(channels):
            self._pending.start(f"stasis-waiting:{channel_id}", self._release_unless_started(channel_id))

    async def _release_unless_started(self, channel_id: str) -> None:
        """A channel the snapshot shows waiting: its StasisStart may be read right after the
        snapshot (routed then, as any call); if it has not come within the deadline, it was
        lost with the link, and the channel goes on to the fallback."""
        await asyncio.sleep(self._deadline)
        if channel_id in self._started_lately:
            return
        log.warning("channel %s was waiting in Stasis %s (its start was not seen): sent on to the fallback",
                    channel_id, self._app)
        await self._answer(channel_id, [(v.STATUS, RoutingStatus.ERROR.value)])

    def _waiting(self, channels: tuple[Json, ...]) -> list[str]:
        """The channels of this list that wait in this application, not being routed now."""
        waiting = []
        for channel in channels:
            dialplan = channel.get("dialplan") or {}
            channel_id = channel.get("id") or ""
            if (channel_id and channel_id not in self._in_hand and dialplan.get("app_name") == "Stasis"
                    and (dialplan.get("app_data") or "").split(",", 1)[0] == self._app):
                waiting.append(channel_id)
        return waiting

    async def at_close(self) -> None:
        """The daemon stops (the events WebSocket is closed, REST still works): let the
        decisions in progress be delivered (each bounded by the deadline), then send on to the
        fallback any channel that entered the application meanwhile."""
        if self._in_hand:
            await asyncio.wait(set(self._in_hand.values()), timeout=self._deadline + 1.0)
        try:
            channels = await self._ari.request("GET", "/channels")
        except AriError as exc:
            log.error("Stasis %s: live channels not read at stop (%s)", self._app, exc)
            return
        for channel_id in self._waiting(tuple(channels) if isinstance(channels, list) else ()):
            log.warning("channel %s entered Stasis %s as the daemon stopped: sent on to the fallback", channel_id, self._app)
            await self._answer(channel_id, [(v.STATUS, RoutingStatus.ERROR.value)])

    def _call_ended(self, event: AriEvent) -> None:
        fields = event.body.get("userevent") or {}
        values = {name: str(fields.get(name, "")) for name in v.CALL_END_ARGS}
        channel: Json = event.body.get("channel") or {}
        report = hangup_report(values, fallback_linkedid=channel.get("id") or "")
        self._pending.start(f"call-end:{report.linkedid}", self._call_log.call_ended(report))
