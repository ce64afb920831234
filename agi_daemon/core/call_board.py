"""The call board: which calls each agent's call window shows, folded from live call events.

A call is on an employee's window while their phone rings for it, and once they talk on it
(they answered, or it was transferred to them). When someone answers, the call leaves the
windows of the others who were rung; a transfer moves it to the target's window; the end of
the call takes it off every window. The board also remembers, per call, whether the line
offers to create a record (R3) and which records the call created.

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


@dataclass
class LiveCall:
    linkedid: str
    direction: Direction
    line: str
    number: str
    started_at: datetime
    ringing: set[str] = field(default_factory=set)  # employees whose phone rings now
    talking: str | None = None  # the employee on the call now
    answered: bool = False
    offer: bool = False  # R3 offer open: "create lead / contact" buttons
    record: EntityRef | None = None  # the record the call created, once created

    def shown_to(self) -> set[str]:
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

    def calls_of(self, employee: str) -> list[LiveCall]:
        """The calls on this employee's window, oldest first."""
        mine = [call for call in self._calls.values() if employee in call.shown_to()]
        return sorted(mine, key=lambda call: (call.started_at, call.linkedid))

    def call(self, linkedid: str) -> LiveCall | None:
        return self._calls.get(linkedid)

    def apply(self, event: CallEvent) -> set[str]:
        """Fold one event in; the employees whose window changed."""
        if isinstance(event, OfferMade):
            return self._note(event.offer.linkedid, offer=True)
        if isinstance(event, RecordsCreated):
            return self._note(event.linkedid, record=event.primary)
        if isinstance(event, Ringing):
            return self._ringing(event)
        call = self._calls.get(event.linkedid)
        if call is None:
            if isinstance(event, Ended):
                self._early.pop(event.linkedid, None)
            return set()
        before, shown_before = call.shown_to(), call.looks()
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
            case Ended():
                del self._calls[event.linkedid]
                return before
        # a card that only changes its state (ringing -> answered on the one agent's window)
        # must be redrawn as much as one that moves
        return before | call.shown_to() if call.looks() != shown_before else set()

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
