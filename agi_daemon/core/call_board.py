"""The call board: which calls each agent's call window shows, folded from live call events.

A call is on an employee's window while their phone rings for it, and once they talk on it
(they answered, or it was transferred to them). When someone answers, the call leaves the
windows of the others who were rung; a transfer moves it to the target's window; the end of
the call takes it off every window, but for an open offer (below). The board also remembers, per call, whether the line
offers to create a record (R3) and which records the call created.

An offer outlives its call: a caller who hangs up before the agent clicked (often while it
still rang) is the very lead an `offer` line is for. The ended call stays, "ended", with its
buttons, on the window of who talked on it last, or when nobody answered, of every agent it
rang, until one of those agents creates the records (the card
then stays only on the creator's window, naming the record) or each closes it; a window keeps
at most ENDED_PER_WINDOW such calls, the oldest going first.

Pure and synchronous: the web edge holds one board and pushes the windows that changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .live_calls import (
    Answered,
    CallEvent,
    Ended,
    OfferMade,
    RecordsCreated,
    Ringing,
    StoppedRinging,
    TransferredTo,
)
from .model import Direction, EntityRef

# Offers and records may be published before the call's first ring (routing runs first):
# how many such calls the board keeps waiting for their ring.
EARLY_MEMORY = 256
ENDED_PER_WINDOW = 10  # ended calls an agent's window keeps for their offer (or the record made of it)


@dataclass
class LiveCall:
    linkedid: str
    direction: Direction
    line: str
    number: str
    started_at: datetime
    ringing: set[str] = field(default_factory=set)  # employees whose phone rings now
    rung: set[str] = field(default_factory=set)  # every employee whose phone rang for it
    talking: str | None = None  # the employee on the call now
    answered: bool = False
    offer: bool = False  # R3 offer open: "create lead / contact" buttons
    record: EntityRef | None = None  # the record the call created, once created
    ended: bool = False  # over, kept on the windows in `kept_for` for its offer
    kept_for: set[str] = field(default_factory=set)

    def shown_to(self) -> set[str]:
        if self.ended:
            return set(self.kept_for)
        return self.ringing | ({self.talking} if self.talking else set())

    def looks(self) -> tuple[frozenset[str], str | None, bool]:
        """What the windows draw of the call's state: who it rings, who talks, answered."""
        return frozenset(self.ringing), self.talking, self.answered


@dataclass
class _Early:
    offer: bool = False
    record: EntityRef | None = None


class CallBoard:
    def __init__(self) -> None:
        self._calls: dict[str, LiveCall] = {}
        self._early: dict[str, _Early] = {}
        self._ended: dict[str, LiveCall] = {}  # oldest end first

    def calls_of(self, employee: str) -> list[LiveCall]:
        """The calls on this employee's window: those in progress, then the ended ones, each
        oldest first."""
        mine = [call for call in (*self._calls.values(), *self._ended.values()) if employee in call.shown_to()]
        return sorted(mine, key=lambda call: (call.ended, call.started_at, call.linkedid))

    def call(self, linkedid: str) -> LiveCall | None:
        return self._calls.get(linkedid) or self._ended.get(linkedid)

    def close(self, linkedid: str, employee: str) -> set[str]:
        """The agent closes an ended call's card: gone from their window (a call in progress
        cannot be closed). The employees whose window changed."""
        call = self._ended.get(linkedid)
        if call is None or employee not in call.kept_for:
            return set()
        self._forget(call, {employee})
        return {employee}

    def apply(self, event: CallEvent) -> set[str]:
        """Fold one event in; the employees whose window changed."""
        if isinstance(event, OfferMade):
            return self._note(event.offer.linkedid, offer=True)
        if isinstance(event, RecordsCreated):
            if event.linkedid in self._ended:
                return self._created_after_the_end(self._ended[event.linkedid], event)
            return self._note(event.linkedid, record=event.primary)
        if isinstance(event, Ringing):
            return self._ringing(event)
        call = self._calls.get(event.linkedid)
        if call is None:
            if isinstance(event, Ended):
                self._early.pop(event.linkedid, None)
            return set()
        before, shown_before = call.shown_to(), call.looks()
        if isinstance(event, Ended):
            del self._calls[event.linkedid]
            # whose window keeps the offer: who talked on the call last; nobody answered, every
            # agent it rang (their phones stopped ringing before the call's end)
            windows = {call.talking} if call.talking else set() if call.answered else call.rung
            if call.offer and call.record is None and windows:
                self._keep(call, windows)
                return before | windows
            return before
        match event:
            case StoppedRinging():
                call.ringing.discard(event.employee)
            case Answered():
                call.answered = True
                call.ringing.clear()
                call.talking = event.employee or call.talking
            case TransferredTo():
                call.ringing.clear()
                call.talking = event.to_employee or call.talking
        # a card that only changes its state (ringing -> answered on the one agent's window)
        # must be redrawn as much as one that moves
        return before | call.shown_to() if call.looks() != shown_before else set()

    def _keep(self, call: LiveCall, windows: set[str]) -> None:
        """The ended call stays, for its offer, on `windows`: each keeps its newest
        ENDED_PER_WINDOW ended calls."""
        call.ended, call.kept_for = True, set(windows)
        call.ringing.clear()
        self._ended[call.linkedid] = call
        for employee in windows:
            kept = [ended for ended in self._ended.values() if employee in ended.kept_for]
            for oldest in kept[:-ENDED_PER_WINDOW]:
                self._forget(oldest, {employee})

    def _forget(self, call: LiveCall, windows: set[str]) -> None:
        call.kept_for -= windows
        if not call.kept_for:
            del self._ended[call.linkedid]

    def _created_after_the_end(self, call: LiveCall, event: RecordsCreated) -> set[str]:
        """Records made of an ended call's offer: its card now names them on the window of
        who made them, and leaves the others (nothing more to create there)."""
        if call.record is not None:  # a second click's answer: the first one's creator keeps it
            return set()
        before = call.shown_to()
        call.record, call.offer = event.primary, False
        self._forget(call, call.kept_for - {event.responsible or ""})
        return before

    def _ringing(self, event: Ringing) -> set[str]:
        call = self._calls.get(event.linkedid)
        if call is None:
            early = self._early.pop(event.linkedid, _Early())
            call = LiveCall(event.linkedid, event.direction, event.line, event.number, event.at,
                            offer=early.offer and early.record is None, record=early.record)
            self._calls[event.linkedid] = call
        if event.direction is Direction.OUTGOING and not call.talking:
            call.talking = event.employee
            return {event.employee}
        if call.answered or event.employee in call.ringing:
            return set()
        call.ringing.add(event.employee)
        call.rung.add(event.employee)
        return {event.employee}

    def _note(self, linkedid: str, *, offer: bool = False, record: EntityRef | None = None) -> set[str]:
        call = self._calls.get(linkedid)
        if call is None:
            early = self._early.setdefault(linkedid, _Early())
            early.offer = early.offer or offer
            early.record = record or early.record
            while len(self._early) > EARLY_MEMORY:
                del self._early[next(iter(self._early))]
            return set()
        if record is not None:
            call.record, call.offer = record, False
        elif offer and call.record is None:
            call.offer = True
        return call.shown_to()
