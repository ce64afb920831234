"""The fold: `step(rules, state, event)` applies one event and says what must happen because
of it. The rules are the package docstring's."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

import immutables

from ..model import Direction, Rules, Transfer
from ..outcome import employee_for_peer, trunk_number
from ..phone import try_e164
from ..rules import CallEntry, CallFacts, identify
from .events import (
    BridgeEntered,
    BridgeLeft,
    CallEnded,
    Channel,
    ChannelCreated,
    ChannelHungUp,
    DialEnded,
    DialStarted,
    Effect,
    LiveChannel,
    Reassign,
    Resynced,
    TrackerEvent,
    Transferred,
    Unrouted,
)
from .record import employee_for_channel, record_for
from .state import (
    _NO_CHANNELS,
    Bridged,
    CallChanges,
    CallState,
    DialLeg,
    TrackerState,
)

Step = tuple[TrackerState, tuple[Effect, ...]]

# ---------------------------------------------------------------------------- the fold


def step(rules: Rules, state: TrackerState, event: TrackerEvent) -> Step:
    """Apply one event: the new state and what must happen because of it."""
    match event:
        case ChannelCreated():
            return _created(rules, state, event)
        case Resynced():
            return _resynced(rules, state, event)
        case ChannelHungUp():
            return _hung_up(rules, state, event)
        case BridgeEntered() | BridgeLeft():
            return _on_call(rules, state, event.channel, event.at, event)
        case DialStarted() | DialEnded():
            if event.caller is None or _behind_an_endpoint(rules, event.caller, event.destination):
                # not a leg of the call; the dialled channel may still show the entry
                return _on_call(rules, state, event.destination, event.at, None)
            return _on_call(rules, state, event.caller, event.at, event, also=(event.destination,))
        case Transferred():
            return _transferred(rules, state, event)
    return state, ()


def _created(rules: Rules, state: TrackerState, event: ChannelCreated) -> Step:
    channel = event.channel
    if not channel.linkedid or channel.linkedid in state.ended:
        return state, ()
    state, effects = _release(rules, state, channel, event.at)  # a channel is in one call only
    call = state.calls.get(channel.linkedid)
    if call is None:
        call = CallState(channel.linkedid, started_at=event.at, last_at=event.at)
    call = replace(call, channels=call.channels | {channel.uniqueid}, last_at=max(call.last_at, event.at),
                   entry=_entry(call, call.entry, channel))
    return _put(rules, state, call), effects


def _on_call(rules: Rules, state: TrackerState, channel: Channel, at: datetime,
             event: TrackerEvent | None, also: tuple[Channel, ...] = ()) -> Step:
    """An event about a live channel of a known call: claim the channels it shows, note the
    entry contexts they stand in, then apply what the event itself says (in one update)."""
    if channel.linkedid not in state.calls:
        return state, ()
    effects: tuple[Effect, ...] = ()
    for shown in (channel, *also):
        state, more = _claim(rules, state, shown, at)
        effects += more
    call = state.calls.get(channel.linkedid)
    if call is None:
        return state, effects
    entry = call.entry
    for shown in (channel, *also):
        entry = _entry(call, entry, shown)
    if entry is not call.entry:
        call = replace(call, entry=entry)
    changes: CallChanges = {}
    match event:
        case DialStarted():
            changes = _dial_started(rules, call, event)
            # an entry found by a Dial is an employee's own dial to the trunk: the daemon was never asked
            if "entry" in changes and (facts := _identify(rules, changes["entry"], call.linkedid)) is not None:
                effects += (Unrouted(facts),)
        case DialEnded():
            changes = _dial_ended(rules, call, event)
        case BridgeEntered():
            entering = Bridged(event.channel.uniqueid, event.bridge_id,
                               employee_for_channel(rules, event.channel.name))
            bridged = _without(call.bridged, entering.uniqueid) + (entering,)
            changes = _bridges(call, bridged, (entering.bridge_id,), event.at)
        case BridgeLeft():
            changes = {"bridged": _without(call.bridged, event.channel.uniqueid)}
    if at > call.last_at:
        changes["last_at"] = at
    return _put(rules, state, replace(call, **changes) if changes else call), effects


def _dial_started(rules: Rules, call: CallState, event: DialStarted) -> CallChanges:
    if any(leg.destination == event.destination.uniqueid and not leg.status for leg in call.legs):
        return {}  # the same DialBegin again
    employee = (employee_for_peer(rules, event.dial_string)
                or employee_for_channel(rules, event.destination.name))
    leg = DialLeg(event.destination.uniqueid, employee, event.at)
    changes: CallChanges = {"legs": call.legs + (leg,), "rung": _add(call.rung, employee)}
    if call.entry is None and (entry := _direct_outgoing(rules, event)) is not None:
        changes["entry"] = entry
    return changes


def _behind_an_endpoint(rules: Rules, caller: Channel, destination: Channel) -> bool:
    """Whether a Dial is made behind an employee's endpoint: by the far half (";2") of an
    endpoint template "Local/{extension}@employees" whose context Dial()s the employee's desk
    phone (or forwards to a mobile), to a channel that is no employee's endpoint. That Dial is
    the employee's own business, not a leg of the call: the phone answers it first, on a
    channel that names nobody, and the leg's own answer says who answered. (A Dial from that
    half to another employee's endpoint, an attended transfer's consultation, stays a leg.)"""
    return (caller.name.startswith("Local/") and caller.name.endswith(";2")
            and employee_for_channel(rules, caller.name) is not None
            and employee_for_channel(rules, destination.name) is None)


def _direct_outgoing(rules: Rules, event: DialStarted) -> CallEntry | None:
    """An employee's channel dialling the trunk without passing through agi-daemon-outgoing
    (a dialplan of its own, a speed dial): still an outgoing call to log (R12)."""
    number = trunk_number(rules, event.dial_string)
    caller = event.caller.caller_id if event.caller is not None else ""
    if number is None or rules.employee_by_extension(caller) is None:
        return None
    if employee_for_peer(rules, event.dial_string) is not None or try_e164(number, rules.default_region) is None:
        return None  # an internal call (a trunk template shaped like the employees'), not the trunk
    return CallEntry(Direction.OUTGOING, number, caller)


def _dial_ended(rules: Rules, call: CallState, event: DialEnded) -> CallChanges:
    status = event.status.upper() or "CANCEL"
    legs = list(call.legs)
    index = next((i for i in range(len(legs) - 1, -1, -1)
                  if legs[i].destination == event.destination.uniqueid and not legs[i].status), None)
    changes: CallChanges = {}
    if index is None:  # its DialBegin was missed (before a resync): the leg is known from here
        employee = employee_for_channel(rules, event.destination.name)
        legs.append(DialLeg(event.destination.uniqueid, employee, event.at, status))
        changes["rung"] = _add(call.rung, employee)
        index = len(legs) - 1
    else:
        legs[index] = replace(legs[index], status=status)
    changes["legs"] = tuple(legs)
    if status == "ANSWER" and call.answered_at is None:
        changes.update(_answer(call, legs[index].employee, event.at))
    return changes


def _bridges(call: CallState, bridged: tuple[Bridged, ...], entered: Iterable[str],
             at: datetime) -> CallChanges:
    """The call's channels now in bridges are `bridged`, some just entered bridges `entered`:
    a call not yet answered is answered (at `at`) as soon as a bridge holds two of its
    channels, or, incoming, one of an employee."""
    changes: CallChanges = {"bridged": bridged}
    if call.answered_at is not None:
        return changes
    incoming = _direction(call) is Direction.INCOMING
    for bridge in entered:
        members = [b for b in bridged if b.bridge_id == bridge]
        employee = next((b.employee for b in members if b.employee), None)
        if len(members) > 1 or (incoming and employee):
            changes.update(_answer(call, employee, at))
            break
    return changes


def _without(bridged: tuple[Bridged, ...], uniqueid: str) -> tuple[Bridged, ...]:
    if not any(b.uniqueid == uniqueid for b in bridged):
        return bridged
    return tuple(b for b in bridged if b.uniqueid != uniqueid)


def _answer(call: CallState, employee: str | None, at: datetime) -> CallChanges:
    incoming = _direction(call) is Direction.INCOMING
    return {"answered_at": at, "answered_by": employee if incoming else None,
            "talking_to": employee if incoming and employee else call.talking_to}


def _transferred(rules: Rules, state: TrackerState, event: Transferred) -> Step:
    candidates = [event.transferee.linkedid] if event.transferee else []
    candidates.append(event.transferer.linkedid)
    linkedid = next((lid for lid in candidates if lid in state.calls), None)
    if linkedid is None:
        return state, ()
    call = state.calls[linkedid]
    facts = call_facts(rules, call)
    source = employee_for_channel(rules, event.transferer.name) or _talking_to(call, facts)
    target = employee_for_channel(rules, event.target.name) if event.target else None
    if target is None and event.bridge_id:  # the target left unnamed: who joined that bridge?
        excluded = {event.transferer.uniqueid, event.transferee.uniqueid if event.transferee else ""}
        joined = [b.employee for b in call.bridged
                  if b.bridge_id == event.bridge_id and b.employee and b.uniqueid not in excluded]
        target = joined[-1] if joined else None
    if target is None and event.target_extension:
        employee = rules.employee_by_extension(event.target_extension)
        target = employee.id if employee else None
    call = replace(call, last_at=max(call.last_at, event.at),
                   transfers=call.transfers + (Transfer(source, target, event.kind),),
                   rung=_add(call.rung, target), talking_to=target or call.talking_to)
    effects: tuple[Effect, ...] = ()
    if target is not None and facts is not None:
        effects = (Reassign(linkedid, facts.line.number, target, event.kind, facts.external),)
    return _put(rules, state, call), effects


def _hung_up(rules: Rules, state: TrackerState, event: ChannelHungUp) -> Step:
    channel = event.channel
    owner = _owner(state, channel)
    if owner is None:  # a call already over, a duplicate, or never seen: nothing to do
        return state, ()
    call = replace(owner, channels=owner.channels - {channel.uniqueid}, last_at=max(owner.last_at, event.at),
                   bridged=_without(owner.bridged, channel.uniqueid), entry=_entry(owner, owner.entry, channel))
    if call.channels:
        return _put(rules, state, call), ()
    return _end(rules, state, call, event.at)


def _resynced(rules: Rules, state: TrackerState, event: Resynced) -> Step:
    live: dict[str, list[LiveChannel]] = {}
    for item in {item.channel.uniqueid: item for item in event.channels}.values():  # once each
        if item.channel.linkedid:
            live.setdefault(item.channel.linkedid, []).append(item)
    effects: list[Effect] = []
    gone = [call for linkedid, call in state.calls.items() if linkedid not in live]  # while we were away
    for call in sorted(gone, key=lambda call: (call.started_at, call.linkedid)):  # oldest first
        state, ended = _end(rules, state, call, call.last_at, partial=True)
        effects.extend(ended)
    for linkedid, items in live.items():
        if linkedid in state.ended:
            continue
        known = state.calls.get(linkedid)
        if known is None:
            age = max(item.age_seconds for item in items)
            started = event.at - timedelta(seconds=max(0.0, age))
            call = CallState(linkedid, started_at=started, last_at=started)
        else:
            call = known
        entry = call.entry
        for item in sorted(items, key=lambda item: -item.age_seconds):
            entry = _entry(call, entry, item.channel)
        call = replace(call, channels=frozenset(item.channel.uniqueid for item in items), entry=entry)
        call = _from_snapshot(rules, call, items, event.at)
        state = _put(rules, state, call)
    return state, tuple(effects)


def _from_snapshot(rules: Rules, call: CallState, items: list[LiveChannel], at: datetime) -> CallState:
    """What the live channels tell: the employees rung (their channels exist), the bridges,
    and so whether the call is answered (see `_bridges`). The answer time is unknown: the
    creation of the youngest bridged channel (it cannot be later), not before the last event
    seen."""
    bridged: list[Bridged] = []
    rung = call.rung
    youngest = None
    for item in sorted(items, key=lambda item: -item.age_seconds):
        employee = employee_for_channel(rules, item.channel.name)
        rung = _add(rung, employee)
        if item.bridge_id:
            bridged.append(Bridged(item.channel.uniqueid, item.bridge_id, employee))
            youngest = item.age_seconds
    answered_at = at
    if youngest is not None:
        answered_at = max(call.last_at, at - timedelta(seconds=max(0.0, youngest)))
    changes = _bridges(call, tuple(bridged), dict.fromkeys(b.bridge_id for b in bridged), answered_at)
    changes["rung"] = rung
    changes["last_at"] = max(call.last_at, at)
    return replace(call, **changes)


# ---------------------------------------------------------------------------- helpers


def _claim(rules: Rules, state: TrackerState, channel: Channel, at: datetime) -> Step:
    """Make `channel` a member of the call its linkedid names, taking it from the call that
    had it under another linkedid; that call ends if it was its last channel."""
    target = state.calls.get(channel.linkedid)
    if target is not None and channel.uniqueid in target.channels:
        return state, ()
    state, effects = _release(rules, state, channel, at)
    if target is not None:
        state = _put(rules, state, replace(target, channels=target.channels | {channel.uniqueid}))
    return state, effects


def _release(rules: Rules, state: TrackerState, channel: Channel, at: datetime) -> Step:
    """Take `channel` from the call that has it under another linkedid, if any; that call
    ends if it was its last channel."""
    previous = _owner(state, channel)
    if previous is None or previous.linkedid == channel.linkedid:
        return state, ()
    left = replace(previous, channels=previous.channels - {channel.uniqueid},
                   bridged=_without(previous.bridged, channel.uniqueid), last_at=max(previous.last_at, at))
    return _end(rules, state, left, at) if not left.channels else (_put(rules, state, left), ())


def _owner(state: TrackerState, channel: Channel) -> CallState | None:
    """The call that has `channel` (whatever linkedid this event shows), from the index."""
    linkedid = state.owners.get(channel.uniqueid)
    return state.calls[linkedid] if linkedid is not None else None


def _entry(call: CallState, entry: CallEntry | None, channel: Channel) -> CallEntry | None:
    """The call's entry, the first time one of its channels stands in an entry context;
    completed when that sighting had no caller ID yet (a Local channel's creation).
    Returns `entry` itself when nothing changes."""
    if channel.entry is None or channel.linkedid != call.linkedid:
        return entry
    caller = "" if _placeholder(channel.caller_id) else channel.caller_id
    if entry is not None and (entry.direction is not channel.entry or entry.caller_id or not caller):
        return entry
    return CallEntry(channel.entry, channel.exten, caller)


def call_facts(rules: Rules, call: CallState) -> CallFacts | None:
    """The call identified from its entry (`rules.identify`) when it was stored with it (see
    `_put`); None while it has not entered the daemon's contexts, or on a line the config did
    not list then: such a call is not tracked."""
    if call.entry is None:
        return None
    if call.identified is call.entry:
        return call.facts
    return _identify(rules, call.entry, call.linkedid)


def _identify(rules: Rules, entry: CallEntry, linkedid: str) -> CallFacts | None:
    facts = identify(rules, entry, linkedid)
    return facts if isinstance(facts, CallFacts) else None


def _placeholder(caller_id: str) -> bool:
    return caller_id.strip().lower() in ("", "<unknown>", "unknown")


def _end(rules: Rules, state: TrackerState, call: CallState, at: datetime, *, partial: bool = False) -> Step:
    """Forget the call (`call` is its last version, maybe not stored yet) and its channels,
    remember its linkedid, and emit its record if it was tracked."""
    stored = state.calls.get(call.linkedid)
    channels = (call.channels | stored.channels) if stored is not None else call.channels
    new_state = TrackerState(state.calls.without(call.linkedid),
                             _reindex(state.owners, call.linkedid, channels, _NO_CHANNELS),
                             state.ended.remember(call.linkedid))
    facts = call_facts(rules, call)
    if facts is None:
        return new_state, ()
    return new_state, (CallEnded(record_for(call, facts, max(at, call.started_at)), partial),)


def _put(rules: Rules, state: TrackerState, call: CallState) -> TrackerState:
    """Store `call` (new or updated), the channel index following its channels. A call whose
    entry is new (or completed) is identified now, with the rules of this moment: the line and
    the employees it was identified with stay its own until it ends, a reload meanwhile
    notwithstanding."""
    if call.entry is not None and call.identified is not call.entry:
        call = replace(call, facts=_identify(rules, call.entry, call.linkedid), identified=call.entry)
    stored = state.calls.get(call.linkedid)
    owners = _reindex(state.owners, call.linkedid, stored.channels if stored is not None else _NO_CHANNELS,
                      call.channels)
    return TrackerState(state.calls.with_call(call), owners, state.ended)


def _reindex(owners: immutables.Map[str, str], linkedid: str, before: frozenset[str],
             after: frozenset[str]) -> immutables.Map[str, str]:
    """The channel index once the call `linkedid` has `after` instead of `before`. A channel
    that left stays indexed if it is already another call's (a resync may move it first)."""
    if before is after:
        return owners
    for uniqueid in before - after:
        if owners.get(uniqueid) == linkedid:
            owners = owners.delete(uniqueid)
    for uniqueid in after - before:
        owners = owners.set(uniqueid, linkedid)
    return owners


def _add(employees: tuple[str, ...], employee: str | None) -> tuple[str, ...]:
    return employees if employee is None or employee in employees else employees + (employee,)


def _direction(call: CallState) -> Direction | None:
    return call.entry.direction if call.entry else None


def _talking_to(call: CallState, facts: CallFacts | None) -> str | None:
    if call.talking_to:
        return call.talking_to
    if facts is not None and facts.employee is not None:
        return facts.employee.id
    return None

