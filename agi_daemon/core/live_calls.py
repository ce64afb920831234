"""Live call events: what an agent's call window shows as it happens.

Call tracking (`tracker.step`) folds channel events into calls; `live_events` compares the
calls an event touched before and after the fold and says what changed, in the agent's words:
an employee's phone started or stopped ringing, the call was answered, transferred, ended.
The routing service adds what the CRM did for the call: records created, an offer made (R3).
Services publish these to a `ports.Notifier`; the web edge subscribes.

Pure: no I/O, no clock. Deriving the events beside the fold keeps the tracker's own effects
(CallEnded, Reassign) as they are, and costs one lookup per channel the event shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Union

from collections.abc import Iterable

from .model import CallRecord, Direction, EntityRef, Offer, Rules, TransferKind
from .tracker import (
    BridgeEntered,
    BridgeLeft,
    CallEnded,
    CallState,
    Channel,
    ChannelCreated,
    ChannelHungUp,
    DialEnded,
    DialStarted,
    Effect,
    Resynced,
    TrackerEvent,
    TrackerState,
    Transferred,
    call_facts,
)


@dataclass(frozen=True, slots=True)
class Ringing:
    """An employee's phone rings for this call (outgoing: the employee who placed it)."""

    linkedid: str
    employee: str
    direction: Direction
    line: str  # E.164
    number: str  # the external party, E.164 when readable
    at: datetime


@dataclass(frozen=True, slots=True)
class StoppedRinging:
    """That employee's phone stopped ringing without answering (rang out, busy, cancelled)."""

    linkedid: str
    employee: str


@dataclass(frozen=True, slots=True)
class Answered:
    linkedid: str
    employee: str | None  # who answered (None: not an employee, e.g. an outgoing call's client)
    at: datetime


@dataclass(frozen=True, slots=True)
class TransferredTo:
    linkedid: str
    from_employee: str | None
    to_employee: str | None
    kind: TransferKind


@dataclass(frozen=True, slots=True)
class Ended:
    linkedid: str
    record: CallRecord | None  # the R12 record of a tracked call


@dataclass(frozen=True, slots=True)
class RecordsCreated:
    """The CRM records this call created (at the call, or from the call window); `primary` is
    the one the call is logged on."""

    linkedid: str
    primary: EntityRef
    responsible: str | None


@dataclass(frozen=True, slots=True)
class OfferMade:
    """R3 `offer`: the call window may create a lead or contact for this call."""

    offer: Offer


CallEvent = Union[Ringing, StoppedRinging, Answered, TransferredTo, Ended, RecordsCreated, OfferMade]


class NoOneListens:
    """The notifier of a daemon without a call window: every event is dropped."""

    def publish(self, event: CallEvent) -> None:
        return None


class Fanout:
    """One notifier that tells several (the call windows, the metrics), in order."""

    def __init__(self, listeners: Iterable[object]) -> None:
        self._listeners = tuple(listeners)

    def publish(self, event: CallEvent) -> None:
        for listener in self._listeners:
            listener.publish(event)  # type: ignore[attr-defined]


def live_events(rules: Rules, before: TrackerState, after: TrackerState, event: TrackerEvent,
                effects: tuple[Effect, ...]) -> tuple[CallEvent, ...]:
    """What changed, for the call window, when `event` took the tracker from `before` to `after`."""
    found: list[CallEvent] = []
    for linkedid in _touched(before, event):
        old, new = before.calls.get(linkedid), after.calls.get(linkedid)
        if new is not None:
            found.extend(_changes(rules, old, new))
    for effect in effects:
        if isinstance(effect, CallEnded):
            found.append(Ended(effect.record.linkedid, effect.record))
    return tuple(found)


def _touched(before: TrackerState, event: TrackerEvent) -> list[str]:
    """The calls an event may change: those of the channels it shows, under their new and
    their previous linkedid (every call at a resync)."""
    if isinstance(event, Resynced):
        return list(dict.fromkeys([*before.calls, *(item.channel.linkedid for item in event.channels)]))
    channels: list[Channel | None] = []
    match event:
        case ChannelCreated() | ChannelHungUp() | BridgeEntered() | BridgeLeft():
            channels = [event.channel]
        case DialStarted() | DialEnded():
            channels = [event.caller, event.destination]
        case Transferred():
            channels = [event.transferer, event.transferee, event.target]
    linkedids: dict[str, None] = {}
    for channel in channels:
        if channel is None:
            continue
        linkedids[channel.linkedid] = None
        owner = before.owners.get(channel.uniqueid)
        if owner is not None:
            linkedids[owner] = None
    return list(linkedids)


def _changes(rules: Rules, old: CallState | None, new: CallState) -> list[CallEvent]:
    found: list[CallEvent] = []
    old_legs = old.legs if old is not None else ()
    fresh = new.legs[len(old_legs):] if new.legs[:len(old_legs)] == old_legs else ()
    rebuilt = old is None and not new.legs and bool(new.rung)  # found in progress at a resync
    if fresh or (old_legs and new.legs != old_legs) or rebuilt:
        facts = call_facts(rules, new)
        if facts is not None:
            number = facts.external or facts.external_text
            if facts.direction is Direction.OUTGOING and facts.employee is not None and not old_legs:
                found.append(Ringing(new.linkedid, facts.employee.id, facts.direction, facts.line.number,
                                     number, new.last_at))
            for leg in fresh:
                if leg.employee is not None and not leg.status:
                    found.append(Ringing(new.linkedid, leg.employee, facts.direction, facts.line.number,
                                         number, leg.started_at))
            if rebuilt and facts.direction is Direction.INCOMING:
                # who is on it now (its answerer), else every employee whose phone is in it
                for employee in ((new.talking_to,) if new.talking_to else new.rung):
                    found.append(Ringing(new.linkedid, employee, facts.direction, facts.line.number,
                                         number, new.started_at))
    for before_leg, after_leg in zip(old_legs, new.legs, strict=False):  # legs are only ever added
        if not before_leg.status and after_leg.status and after_leg.status != "ANSWER" and after_leg.employee:
            found.append(StoppedRinging(new.linkedid, after_leg.employee))
    if new.answered_at is not None and (old is None or old.answered_at is None):
        found.append(Answered(new.linkedid, new.answered_by or new.talking_to, new.answered_at))
    old_transfers = old.transfers if old is not None else ()
    for transfer in new.transfers[len(old_transfers):]:
        found.append(TransferredTo(new.linkedid, transfer.from_employee, transfer.to_employee, transfer.kind))
    return found
