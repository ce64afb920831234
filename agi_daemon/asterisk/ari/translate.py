"""ARI -> call tracker: turn an `AriEvent` / `AriResync` into the core's frozen tracker event,
the same contract the AMI edge produces (agi_daemon/asterisk/ami/translate.py).

    ARI event                 tracker event
    ChannelCreated            ChannelCreated
    ChannelStateChange        ChannelCreated (a sighting: the channel's call, its context)
    Dial, dialstatus ""       DialStarted    (AMI DialBegin)
    Dial, final dialstatus    DialEnded      (AMI DialEnd; RINGING, PROGRESS ... are skipped)
    ChannelEnteredBridge      BridgeEntered
    ChannelLeftBridge         BridgeLeft
    BridgeBlindTransfer       Transferred(blind), when result is Success
    BridgeAttendedTransfer    Transferred(attended), when result is Success
    ChannelDestroyed          ChannelHungUp
    AriResync                 Resynced (GET /channels, each channel's bridge from GET /bridges)

A channel's linkedid comes from its ``channelvars`` (ari.conf ``channelvars = CHANNEL(linkedid)``,
config/asterisk/ari-agi-daemon.conf); without it each channel is its own call. Times: the
event's ``timestamp``; a snapshot's channels are aged from their ``creationtime``.
"""
from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import datetime, timezone

from ...core.model import TransferKind
from ...core.tracker import (
    BridgeEntered,
    BridgeLeft,
    Channel,
    ChannelCreated,
    ChannelHungUp,
    DialEnded,
    DialStarted,
    LiveChannel,
    Resynced,
    TrackerEvent,
    Transferred,
)
from ..contexts import ENTRY_CONTEXTS
from ..unreadable_events import readable_events
from .model import AriEvent, AriItem, AriResync, Json

LINKEDID_VAR = "CHANNEL(linkedid)"  # ari.conf channelvars
FINAL_DIAL_STATUSES = frozenset({
    "ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "DONTCALL", "TORTURE", "INVALIDARGS",
})


def translate(item: AriItem) -> TrackerEvent | None:
    """The tracker event an ARI item stands for, or None when the tracker has no use for it."""
    if isinstance(item, AriResync):
        return resynced(item)
    handler = _HANDLERS.get(item.type)
    return handler(item) if handler is not None else None


def tracker_events(items: AsyncIterable[AriItem]) -> AsyncIterator[TrackerEvent]:
    """`translate` over a stream of ARI items (`AriClient.events()`); an event it cannot read
    is skipped with a warning."""
    return readable_events(items, translate, "ARI", lambda item: getattr(item, "type", "resync"))


def channel_of(data: Json | None) -> Channel | None:
    """The tracker's view of an ARI Channel object; None when absent."""
    if not data:
        return None
    uniqueid = data.get("id") or ""
    if not uniqueid:
        return None
    dialplan = data.get("dialplan") or {}
    context = dialplan.get("context") or ""
    variables = data.get("channelvars") or {}
    return Channel(
        uniqueid=uniqueid,
        name=data.get("name") or "",
        linkedid=variables.get(LINKEDID_VAR) or uniqueid,
        context=context,
        exten=dialplan.get("exten") or "",
        caller_id=(data.get("caller") or {}).get("number") or "",
        entry=ENTRY_CONTEXTS.get(context),
    )


def resynced(snapshot: AriResync) -> Resynced:
    bridge_of = {channel_id: bridge.get("id", "") for bridge in snapshot.bridges
                 for channel_id in bridge.get("channels") or ()}
    now = _time(snapshot.received_at)
    live = []
    for data in snapshot.channels:
        channel = channel_of(data)
        if channel is None:
            continue
        created = _parse(data.get("creationtime"))
        age = (now - created).total_seconds() if created is not None else 0.0
        live.append(LiveChannel(channel, data.get("state") or "", bridge_of.get(channel.uniqueid, ""), max(0.0, age)))
    return Resynced(tuple(live), now)


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _at(event: AriEvent) -> datetime:
    return _parse(event.body.get("timestamp")) or _time(event.received_at)


def _sighted(event: AriEvent) -> TrackerEvent | None:
    found = channel_of(event.body.get("channel"))
    return ChannelCreated(found, _at(event)) if found else None


def _dial(event: AriEvent) -> TrackerEvent | None:
    body = event.body
    destination = channel_of(body.get("peer"))
    if destination is None:
        return None
    status = (body.get("dialstatus") or "").upper()
    caller = channel_of(body.get("caller"))
    if not status:
        return DialStarted(caller, destination, body.get("dialstring") or "", _at(event))
    if status in FINAL_DIAL_STATUSES:
        return DialEnded(caller, destination, status, _at(event))
    return None  # RINGING, PROGRESS, PROCEEDING: the dial goes on


def _bridge_id(event: AriEvent) -> str:
    return (event.body.get("bridge") or {}).get("id") or ""


def _entered(event: AriEvent) -> TrackerEvent | None:
    found = channel_of(event.body.get("channel"))
    return BridgeEntered(found, _bridge_id(event), _at(event)) if found else None


def _left(event: AriEvent) -> TrackerEvent | None:
    found = channel_of(event.body.get("channel"))
    return BridgeLeft(found, _bridge_id(event), _at(event)) if found else None


def _succeeded(event: AriEvent) -> bool:
    return (event.body.get("result") or "").strip().lower() == "success"


def _blind_transfer(event: AriEvent) -> TrackerEvent | None:
    body = event.body
    transferer = channel_of(body.get("channel"))
    if transferer is None or not _succeeded(event):
        return None
    return Transferred(TransferKind.BLIND, transferer, channel_of(body.get("transferee")), None,
                       body.get("exten") or "", _at(event))


def _attended_transfer(event: AriEvent) -> TrackerEvent | None:
    body = event.body
    transferer = channel_of(body.get("transferer_first_leg")) or channel_of(body.get("transferer_second_leg"))
    if transferer is None or not _succeeded(event):
        return None
    target = channel_of(body.get("transfer_target"))
    return Transferred(TransferKind.ATTENDED, transferer, channel_of(body.get("transferee")), target,
                       target.exten if target is not None else "", _at(event),
                       bridge_id=body.get("destination_bridge") or "")


def _destroyed(event: AriEvent) -> TrackerEvent | None:
    found = channel_of(event.body.get("channel"))
    return ChannelHungUp(found, str(event.body.get("cause", "")), _at(event)) if found else None


_HANDLERS: dict[str, Callable[[AriEvent], TrackerEvent | None]] = {
    "ChannelCreated": _sighted,
    "ChannelStateChange": _sighted,
    "Dial": _dial,
    "ChannelEnteredBridge": _entered,
    "ChannelLeftBridge": _left,
    "BridgeBlindTransfer": _blind_transfer,
    "BridgeAttendedTransfer": _attended_transfer,
    "ChannelDestroyed": _destroyed,
}

EVENT_TYPES = frozenset(_HANDLERS)
