"""AMI -> call tracker: turn an `AmiEvent` / `AmiResync` into the core's frozen tracker event.

    async for item in client.events():
        event = translate(item)
        if event is not None:
            state, effects = tracker.step(rules, state, event)

    async for event in tracker_events(client.events()):   # the same, as a stream
        ...

`translate` returns None for every event the tracker does not need (`EVENT_NAMES` lists the
ones it reads: give it to `AmiClient(events=...)` and to manager.conf's eventfilter), for
transfers whose `Result` is not Success, and for events too damaged to use (no uniqueid).
Newstate, VarSet, Newexten and the like are not read: dials, bridges and hangups say enough.

The edge knows the dialplan: a channel whose context is one of `ENTRY_CONTEXTS`
(agi_daemon/asterisk/contexts.py) gets `Channel.entry` set, so the
core can tell a call the daemon routes from any other without knowing context names.

Times: the event's ``Timestamp`` header when Asterisk sends one (manager.conf
``timestampevents = yes``), else `AmiEvent.received_at`; both epoch seconds, made UTC datetimes
(a resync has only its reception time: the daemon and Asterisk share a clock on one host).
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
from ..contexts import ENTRY_CONTEXTS, INCOMING_CONTEXT, OUTGOING_CONTEXT
from ..unreadable_events import readable_events
from .model import AmiEvent, AmiItem, AmiResync, ChannelSnapshot

__all__ = ["ENTRY_CONTEXTS", "EVENT_NAMES", "INCOMING_CONTEXT", "OUTGOING_CONTEXT", "tracker_events", "translate"]


def translate(item: AmiItem) -> TrackerEvent | None:
    """The tracker event an AMI item stands for, or None when the tracker has no use for it."""
    if isinstance(item, AmiResync):
        return Resynced(tuple(live_channel(c) for c in item.channels), _time(item.received_at))
    handler = _HANDLERS.get(item.name.lower())
    return handler(item) if handler is not None else None


def tracker_events(items: AsyncIterable[AmiItem]) -> AsyncIterator[TrackerEvent]:
    """`translate` over a stream of AMI items (`AmiClient.events()`), keeping what the tracker
    reads; an event it cannot read is skipped with a warning; ends when the stream ends."""
    return readable_events(items, translate, "AMI", lambda item: getattr(item, "name", "resync"))


def channel_of(event: AmiEvent, prefix: str = "") -> Channel | None:
    """The channel an event describes under `prefix` ("", "Dest", "Transferee" ...); None
    when the event carries no such channel."""
    uniqueid = event.get(f"{prefix}Uniqueid", "")
    if not uniqueid:
        return None
    context = event.get(f"{prefix}Context", "")
    return Channel(
        uniqueid=uniqueid,
        name=event.get(f"{prefix}Channel", ""),
        linkedid=event.get(f"{prefix}Linkedid", "") or uniqueid,
        context=context,
        exten=event.get(f"{prefix}Exten", ""),
        caller_id=event.get(f"{prefix}CallerIDNum", ""),
        entry=ENTRY_CONTEXTS.get(context),
    )


def live_channel(snapshot: ChannelSnapshot) -> LiveChannel:
    return LiveChannel(
        channel=Channel(
            uniqueid=snapshot.uniqueid,
            name=snapshot.channel,
            linkedid=snapshot.linkedid or snapshot.uniqueid,
            context=snapshot.context,
            exten=snapshot.exten,
            caller_id=snapshot.caller_id_num,
            entry=ENTRY_CONTEXTS.get(snapshot.context),
        ),
        state=snapshot.state,
        bridge_id=snapshot.bridge_id,
        age_seconds=float(snapshot.duration),
    )


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def _at(event: AmiEvent) -> datetime:
    stamp = event.get("Timestamp")
    if stamp:
        try:
            return _time(float(stamp))
        except (ValueError, OverflowError, OSError):
            pass
    return _time(event.received_at)


def _created(event: AmiEvent) -> TrackerEvent | None:
    found = channel_of(event)
    return ChannelCreated(found, _at(event)) if found else None


def _dial_begin(event: AmiEvent) -> TrackerEvent | None:
    destination = channel_of(event, "Dest")
    if destination is None:
        return None
    return DialStarted(channel_of(event), destination, event.get("DialString", ""), _at(event))


def _dial_end(event: AmiEvent) -> TrackerEvent | None:
    destination = channel_of(event, "Dest")
    if destination is None:
        return None
    return DialEnded(channel_of(event), destination, event.get("DialStatus", ""), _at(event))


def _bridge_enter(event: AmiEvent) -> TrackerEvent | None:
    found = channel_of(event)
    return BridgeEntered(found, event.get("BridgeUniqueid", ""), _at(event)) if found else None


def _bridge_leave(event: AmiEvent) -> TrackerEvent | None:
    found = channel_of(event)
    return BridgeLeft(found, event.get("BridgeUniqueid", ""), _at(event)) if found else None


def _succeeded(event: AmiEvent) -> bool:
    return event.get("Result", "").strip().lower() == "success"


def _blind_transfer(event: AmiEvent) -> TrackerEvent | None:
    transferer = channel_of(event, "Transferer")
    if transferer is None or not _succeeded(event):
        return None
    return Transferred(TransferKind.BLIND, transferer, channel_of(event, "Transferee"), None,
                       event.get("Extension", ""), _at(event))


def _attended_transfer(event: AmiEvent) -> TrackerEvent | None:
    transferer = channel_of(event, "OrigTransferer") or channel_of(event, "SecondTransferer")
    if transferer is None or not _succeeded(event):
        return None
    return Transferred(TransferKind.ATTENDED, transferer, channel_of(event, "Transferee"),
                       channel_of(event, "TransferTarget"), event.get("TransferTargetExten", ""),
                       _at(event), bridge_id=event.get("DestBridgeUniqueid", ""))


def _hangup(event: AmiEvent) -> TrackerEvent | None:
    found = channel_of(event)
    return ChannelHungUp(found, event.get("Cause", ""), _at(event)) if found else None


_HANDLERS: dict[str, Callable[[AmiEvent], TrackerEvent | None]] = {
    "newchannel": _created,
    "dialbegin": _dial_begin,
    "dialend": _dial_end,
    "bridgeenter": _bridge_enter,
    "bridgeleave": _bridge_leave,
    "blindtransfer": _blind_transfer,
    "attendedtransfer": _attended_transfer,
    "hangup": _hangup,
}

EVENT_NAMES = frozenset({
    "Newchannel", "DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave",
    "BlindTransfer", "AttendedTransfer", "Hangup",
})
