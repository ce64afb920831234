"""What the tracker knows of the calls in progress: persistent maps, so that an event costs the
same with 10 or 5,000 calls (see the package's "What an event costs")."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict, TypeVar, overload

import immutables

from ..model import Transfer
from ..rules import CallEntry, CallFacts

_T = TypeVar("_T")

ENDED_MEMORY = 512  # how many ended linkedids are remembered against late events

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
    facts: CallFacts | None = None  # the call identified from `identified`, when it was stored
    identified: CallEntry | None = None  # the entry `facts` come from


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
