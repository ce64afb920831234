"""Call tracking (R10, R12): a pure fold over channel events, keyed by the Asterisk linkedid.

    state = TrackerState()
    for event in events:                      # from agi_daemon.asterisk.ami.translate
        state, effects = step(rules, state, event)
        for effect in effects: ...            # CallEnded(record) / Reassign(...)

Pure: no asyncio, no I/O, no clock. Every time comes from the events, which the edge stamps.
The edge also says which channels stand in one of the daemon's entry contexts
(`Channel.entry`): the core knows nothing of dialplan context names.

What a call is
  Every channel belongs to the call named by its linkedid (Asterisk's "oldest channel of the
  call"). A call starts with its first channel and ends when its LAST channel has hung up.
  Channels move between calls when Asterisk rewrites their linkedid (a channel joining a
  bridge takes the bridge's oldest linkedid, as after an attended transfer made with a
  separate consultation call): the event that shows the new linkedid moves the channel.

Which calls are tracked
  A call is tracked when one of its channels is seen in an entry context
  (agi-daemon-incoming / -outgoing or their fallbacks; any event showing the channel there
  will do, so a trunk channel that starts in the admin's own context and is sent there by
  Goto counts from its creation). `call_facts` applies `rules.identify` to that entry
  (incoming: EXTEN is the line, caller ID the client; outgoing: caller ID is the employee's
  extension, EXTEN the dialled number), when needed (a transfer, the end): the line, the
  external number, the calling employee. A line the config does not list: never tracked.
  An outgoing call that never passed through those contexts is tracked too: a channel whose
  caller ID is an employee's extension dialling the trunk (`asterisk.trunk_template`, read
  back by `outcome.trunk_number`) enters the call as outgoing to that number.
  Other calls (internal calls, consultation calls) are followed only to know when their
  channels leave; they emit nothing. Local channels show "<unknown>" as caller ID when they
  are created: a later sighting of the entry with a real caller ID completes it. R7/R8
  exclusions are NOT applied here: the record carries direction, line and number and the
  service screens it.

Dial legs
  A leg is a Dial made by a channel of the call (DialBegin with a calling channel). Dials
  without a calling channel (the originate that places a test call, the consultation call an
  Atxfer places) are not legs. Each leg names the employee it rings: the DialString
  ("101@employees", "101") through `outcome.employee_for_peer`, else the dialled channel
  ("PJSIP/101-00000002", "Local/101@employees-00000003;1", either Local half) through
  `employee_for_channel`. `employees` on the record: every employee rung or transferred to,
  in the order it happened, without repeats; outgoing calls start with the calling employee.

Answer, ring and talk
  The call is answered by the first leg that ends with DialStatus ANSWER: `answered_at` is
  that DialEnd's time; incoming, `answered_by` is the leg's employee (outgoing calls keep
  answered_by None, as `outcome.call_record` does: the employee placed the call). Should that
  DialEnd be missing (a resync in between), a bridge joining two channels of the call, or,
  incoming, holding an employee's channel, counts as the answer, at the BridgeEnter.
  ring_seconds = (answered_at or ended_at) - started_at; talk_seconds = ended_at - answered_at
  (0 when never answered), transfers included: after a transfer the talk goes on with the
  target, answered_by stays the first answerer.

Disposition (from every leg's DialStatus, each mapped by `outcome.disposition_for`)
  answered  the call was answered (see above);
  missed    no leg at all (the caller hung up before anyone was dialled), or at least one leg
            rang out or was cancelled (NOANSWER, CANCEL; a leg still ringing at the end counts
            as CANCEL): someone could have picked up;
  busy      every leg ended BUSY;
  failed    otherwise: every leg failed (CHANUNAVAIL, CONGESTION, ...), or busy and failed
            legs mixed with none ringing out.

Transfers
  Only successful transfers reach the core (the edge drops `Result` other than Success).
  from: the employee of the transferer's channel, else the employee the client was talking to
  (outgoing: the calling employee). to: blind, the employee whose extension was dialled;
  attended, the employee of the transfer target's channel; Asterisk often leaves that channel
  out of the event (it has already moved on when the event is built), then the employee whose
  channel last joined the bridge the transferee ends up in (DestBridgeUniqueid), else of the
  target's extension. Each transfer is recorded, and when `to` is an employee a `Reassign`
  effect names the call's linkedid, line, target and kind; whether to apply it (new client,
  line setting) is the service's business.

Resync (after every AMI (re)connection, from the live channels)
  A tracked call absent from the snapshot ended while the link was down: its CallEnded is
  emitted at once (the oldest call's first), ended at the last event seen for it, disposition
  from the legs seen.
  A call in the snapshot but unknown here is re-created from it (started `age` seconds before
  the snapshot; answered when its bridges say so, as above), so a later transfer
  and the hangup still produce the record. Calls in both get the snapshot's channel list.
  CallEnded is never emitted twice for a linkedid: ended linkedids are remembered (the last
  `ENDED_MEMORY`) and ignored if their channels show up again in late events.

What an event costs
  The same with 10 calls in progress as with 5,000: a busy call centre must not slow the
  event loop down. The state is made of persistent maps (`immutables.Map`, a hash array mapped
  trie): a new version shares all but O(log n) of its nodes with the one it came from, so
  storing or forgetting a call copies nothing else, and the old state stays valid (the fold
  remains pure). Next to the calls, an index names the call that has each live channel
  (uniqueid -> linkedid), so a hangup or a moved channel finds its call without looking at
  every call's channels; it is kept in step with the calls' channel sets by `_put` and `_end`,
  the only writers, and a channel is in one call at most. The ended linkedids are a persistent
  map too (membership is a lookup) plus their order (to forget the oldest). Only a resync,
  which lists every live channel anyway, looks at every call.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypedDict, TypeVar, Union, overload

import immutables

from .model import CallRecord, Direction, Disposition, Rules, Transfer, TransferKind
from .outcome import disposition_for, employee_for_peer, trunk_number
from .phone import try_e164
from .rules import CallEntry, CallFacts, identify

_T = TypeVar("_T")

ENDED_MEMORY = 512  # how many ended linkedids are remembered against late events

# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel as one event shows it. `entry` is set by the edge when `context` is one of
    the daemon's entry contexts (incoming or outgoing, fallbacks included)."""

    uniqueid: str
    name: str
    linkedid: str
    context: str = ""
    exten: str = ""
    caller_id: str = ""  # CallerIDNum
    entry: Direction | None = None


@dataclass(frozen=True, slots=True)
class ChannelCreated:
    channel: Channel
    at: datetime


@dataclass(frozen=True, slots=True)
class DialStarted:
    caller: Channel | None  # None for dials no channel made (Originate, Atxfer consultation)
    destination: Channel
    dial_string: str  # "101@employees" for Local/101@employees, "101" for PJSIP/101
    at: datetime


@dataclass(frozen=True, slots=True)
class DialEnded:
    caller: Channel | None
    destination: Channel
    status: str  # DialStatus: ANSWER, BUSY, NOANSWER, CANCEL, CHANUNAVAIL ...
    at: datetime


@dataclass(frozen=True, slots=True)
class BridgeEntered:
    channel: Channel
    bridge_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class BridgeLeft:
    channel: Channel
    bridge_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Transferred:
    """A successful blind or attended transfer."""

    kind: TransferKind
    transferer: Channel  # the employee's channel that transferred
    transferee: Channel | None  # the party handed over (the client)
    target: Channel | None  # attended: the channel the transferee now talks to, when named
    target_extension: str  # blind: the extension dialled; attended: the target's extension
    at: datetime
    bridge_id: str = ""  # attended: the bridge the transferee and the target end up in


@dataclass(frozen=True, slots=True)
class ChannelHungUp:
    channel: Channel
    cause: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LiveChannel:
    """One channel alive at a resync."""

    channel: Channel
    state: str  # "Up", "Ringing" ...
    bridge_id: str  # "" when not in a bridge
    age_seconds: float  # since the channel was created


@dataclass(frozen=True, slots=True)
class Resynced:
    """The channels alive after a (re)connection; events missed before it are lost."""

    channels: tuple[LiveChannel, ...]
    at: datetime


TrackerEvent = Union[ChannelCreated, DialStarted, DialEnded, BridgeEntered, BridgeLeft, Transferred,
                     ChannelHungUp, Resynced]

# ---------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A tracked call is over: its R12 record (entity None: the service finds it).

    `partial`: the call ended while the AMI link was down, so its end (and maybe its answer)
    was not seen; the record is a best guess that must not replace a better one."""

    record: CallRecord
    partial: bool = False


@dataclass(frozen=True, slots=True)
class Reassign:
    """R10 candidate: the call was manually transferred to an employee."""

    linkedid: str
    line: str  # E.164
    employee_id: str  # the transfer target
    kind: TransferKind
    # the client's E.164 number: where the outbox orders the call's CRM commands (not part of
    # what the transfer is, so not compared)
    external: str | None = field(default=None, compare=False)


Effect = Union[CallEnded, Reassign]

# ---------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class DialLeg:
    destination: str  # uniqueid of the dialled channel
    employee: str | None
    started_at: datetime
    status: str = ""  # DialStatus once ended; "" while it rings


@dataclass(frozen=True, slots=True)
class Bridged:
    """A channel of the call in a bridge."""

    uniqueid: str
    bridge_id: str
    employee: str | None  # the employee whose endpoint the channel is


@dataclass(frozen=True, slots=True)
class CallState:
    """What is known of one call in progress."""

    linkedid: str
    started_at: datetime
    last_at: datetime  # the latest event applied to the call
    channels: frozenset[str] = frozenset()  # uniqueids alive
    entry: CallEntry | None = None  # None until a channel is seen in an entry context
    legs: tuple[DialLeg, ...] = ()
    bridged: tuple[Bridged, ...] = ()
    answered_at: datetime | None = None
    answered_by: str | None = None
    talking_to: str | None = None  # the employee the external party talks to now
    rung: tuple[str, ...] = ()  # employees rung or transferred to, in order, no repeats
    transfers: tuple[Transfer, ...] = ()


class CallsInProgress(Mapping[str, CallState]):
    """The calls in progress by linkedid: a read-only mapping (equal to a dict with the same
    calls) over a persistent map; `with_call` and `without` make new versions in O(log n).
    Iteration follows the map's hashing, not the order calls started."""

    __slots__ = ("_calls",)

    def __init__(self, calls: immutables.Map[str, CallState] = immutables.Map()) -> None:
        self._calls = calls

    def __getitem__(self, linkedid: str) -> CallState:
        return self._calls[linkedid]

    @overload
    def get(self, linkedid: str, /) -> CallState | None: ...

    @overload
    def get(self, linkedid: str, default: CallState | _T, /) -> CallState | _T: ...

    def get(self, linkedid: str, default: object = None, /) -> object:
        return self._calls.get(linkedid, default)

    def __contains__(self, linkedid: object) -> bool:
        return linkedid in self._calls

    def __iter__(self) -> Iterator[str]:
        return iter(self._calls)

    def __len__(self) -> int:
        return len(self._calls)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CallsInProgress):
            return self._calls == other._calls
        return super().__eq__(other)  # any other mapping: same items

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CallsInProgress({dict(self._calls)!r})"

    def with_call(self, call: CallState) -> CallsInProgress:
        return CallsInProgress(self._calls.set(call.linkedid, call))

    def without(self, linkedid: str) -> CallsInProgress:
        return CallsInProgress(self._calls.delete(linkedid)) if linkedid in self._calls else self


class RecentlyEnded(Sequence[str]):
    """The linkedids of the last `ENDED_MEMORY` calls that ended, oldest first. `in` is a
    lookup and `remember` costs O(log ENDED_MEMORY): nothing is scanned or copied whole."""

    __slots__ = ("_serials", "_order", "_next")

    def __init__(self, serials: immutables.Map[str, int] = immutables.Map(),
                 order: immutables.Map[int, str] = immutables.Map(), next_serial: int = 0) -> None:
        self._serials = serials  # linkedid -> the serial it was last remembered under
        self._order = order  # serial -> linkedid, for the last ENDED_MEMORY serials
        self._next = next_serial

    def __contains__(self, linkedid: object) -> bool:
        return linkedid in self._serials

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]  # no slices
        size = len(self._order)
        position = index + size if index < 0 else index
        if not 0 <= position < size:
            raise IndexError(index)
        return self._order[self._next - size + position]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (RecentlyEnded, tuple, list)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecentlyEnded({tuple(self)!r})"

    def remember(self, linkedid: str) -> RecentlyEnded:
        """These linkedids and `linkedid`, the oldest forgotten beyond ENDED_MEMORY."""
        serial = self._next
        order = self._order.set(serial, linkedid)
        serials = self._serials.set(linkedid, serial)
        oldest = serial - ENDED_MEMORY
        if oldest in order:
            forgotten = order[oldest]
            order = order.delete(oldest)
            if serials[forgotten] == oldest:  # not remembered again since
                serials = serials.delete(forgotten)
        return RecentlyEnded(serials, order, serial + 1)


_NO_CALLS = CallsInProgress()
_NONE_ENDED = RecentlyEnded()
_NO_CHANNELS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TrackerState:
    """Calls in progress by linkedid (tracked or not), the call each of their channels is in,
    and the linkedids that recently ended. Persistent all through: see "What an event costs"."""

    calls: CallsInProgress = field(default_factory=lambda: _NO_CALLS)
    owners: immutables.Map[str, str] = immutables.Map()  # uniqueid -> linkedid, every call's channels
    ended: RecentlyEnded = field(default_factory=lambda: _NONE_ENDED)  # oldest first


Step = tuple[TrackerState, tuple[Effect, ...]]


class CallChanges(TypedDict, total=False):
    """An update of a CallState that the type checker follows: `replace(call, **changes)`."""

    last_at: datetime
    entry: CallEntry
    legs: tuple[DialLeg, ...]
    bridged: tuple[Bridged, ...]
    answered_at: datetime
    answered_by: str | None
    talking_to: str | None
    rung: tuple[str, ...]

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
            if event.caller is None:  # not a leg; the dialled channel may still show the entry
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
    return _put(state, call), effects


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
    return _put(state, replace(call, **changes) if changes else call), effects


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
    return _put(state, call), effects


def _hung_up(rules: Rules, state: TrackerState, event: ChannelHungUp) -> Step:
    channel = event.channel
    owner = _owner(state, channel)
    if owner is None:  # a call already over, a duplicate, or never seen: nothing to do
        return state, ()
    call = replace(owner, channels=owner.channels - {channel.uniqueid}, last_at=max(owner.last_at, event.at),
                   bridged=_without(owner.bridged, channel.uniqueid), entry=_entry(owner, owner.entry, channel))
    if call.channels:
        return _put(state, call), ()
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
        state = _put(state, call)
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
        state = _put(state, replace(target, channels=target.channels | {channel.uniqueid}))
    return state, effects


def _release(rules: Rules, state: TrackerState, channel: Channel, at: datetime) -> Step:
    """Take `channel` from the call that has it under another linkedid, if any; that call
    ends if it was its last channel."""
    previous = _owner(state, channel)
    if previous is None or previous.linkedid == channel.linkedid:
        return state, ()
    left = replace(previous, channels=previous.channels - {channel.uniqueid},
                   bridged=_without(previous.bridged, channel.uniqueid), last_at=max(previous.last_at, at))
    return _end(rules, state, left, at) if not left.channels else (_put(state, left), ())


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
    """The call identified from its entry (`rules.identify`); None while it has not entered
    the daemon's contexts, or on a line the config does not list: such a call is not tracked.
    Computed only when needed (a transfer, the end): it parses phone numbers."""
    if call.entry is None:
        return None
    facts = identify(rules, call.entry, call.linkedid)
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


def _put(state: TrackerState, call: CallState) -> TrackerState:
    """Store `call` (new or updated), the channel index following its channels."""
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


# ---------------------------------------------------------------------------- the record


def call_disposition(answered: bool, statuses: Iterable[str]) -> Disposition:
    """The call's disposition from the DialStatus of every leg ("" for a leg still ringing)."""
    outcomes = [disposition_for(status or "CANCEL") for status in statuses]
    if answered or Disposition.ANSWERED in outcomes:
        return Disposition.ANSWERED
    if not outcomes:
        return disposition_for("")
    if all(outcome is Disposition.BUSY for outcome in outcomes):
        return Disposition.BUSY
    if Disposition.MISSED in outcomes:
        return Disposition.MISSED
    return Disposition.FAILED


def record_for(call: CallState, facts: CallFacts, ended_at: datetime) -> CallRecord:
    """The R12 record of a tracked call (identified as `facts`) that ended at `ended_at`."""
    answered_at = call.answered_at
    if answered_at is not None:
        answered_at = min(max(answered_at, call.started_at), ended_at)
    employees = call.rung
    if facts.direction is Direction.OUTGOING and facts.employee is not None:
        employees = (facts.employee.id,) + tuple(e for e in call.rung if e != facts.employee.id)
    ring_end = answered_at or ended_at
    return CallRecord(
        linkedid=call.linkedid,
        direction=facts.direction,
        line=facts.line.number,
        number=facts.external or facts.external_text,
        disposition=call_disposition(answered_at is not None, (leg.status for leg in call.legs)),
        started_at=call.started_at,
        ended_at=ended_at,
        answered_at=answered_at,
        answered_by=call.answered_by,
        employees=employees,
        ring_seconds=round(max(0.0, (ring_end - call.started_at).total_seconds()), 3),
        talk_seconds=round((ended_at - answered_at).total_seconds(), 3) if answered_at else 0.0,
        transfers=call.transfers,
    )


def channel_endpoint(name: str) -> str:
    """The dialled endpoint a channel name stands for: "PJSIP/101-0000000a" -> "PJSIP/101",
    "Local/101@employees-00000003;1" (either half) -> "Local/101@employees"."""
    base = name
    if base.startswith("Local/") and base[-2:] in (";1", ";2"):
        base = base[:-2]
    head, sep, tail = base.rpartition("-")
    if sep and head and tail and all(ch in "0123456789abcdefABCDEF" for ch in tail):
        return head
    return base


def employee_for_channel(rules: Rules, name: str) -> str | None:
    """The employee whose endpoint (asterisk.endpoint_template) a channel is, or None."""
    return employee_for_peer(rules, channel_endpoint(name)) if name else None
