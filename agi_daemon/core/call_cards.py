"""When a remote CRM's own call card (Bitrix24's, `crm.bitrix24.card`) is shown to whom, and
hidden: a fold of the live call events (core.live_calls) into `CallCardChange` commands.

- `ringing`: shown to each employee whose phone starts ringing for the call (outgoing: the
  employee who placed it); hidden from one whose phone stops ringing unanswered, and from
  everyone but who answered when the call is answered;
- `answered`: shown only to who answers, when they answer;
- both: a transfer shows it to the target and hides it from who transferred; the call's end
  hides it from everyone it is still shown to;
- `none`: never shown.

Pure: the service (services/call_cards.py) keeps each call's `CardsOfCall` and submits what
comes out to the outbox; it also leaves out the calls the CRM must never hear of (R7, R8).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from .commands import CallCardChange
from .live_calls import Answered, CallEvent, Ended, Ringing, StoppedRinging, TransferredTo
from .model import Direction


class CardPolicy(StrEnum):
    """crm.bitrix24.card: when Bitrix24's own call card is shown to the employees a call rings."""

    NONE = "none"
    RINGING = "ringing"
    ANSWERED = "answered"


@dataclass(frozen=True)
class CardsOfCall:
    """One call's card so far: the call (from its first ring) and who it is shown to."""

    linkedid: str
    direction: Direction
    line: str  # E.164
    number: str  # the external party, E.164
    shown: frozenset[str] = frozenset()


def card_changes(policy: CardPolicy, call: CardsOfCall | None,
                 event: CallEvent) -> tuple[CardsOfCall | None, tuple[CallCardChange, ...]]:
    """The call's card after `event`, and the commands that make the portal show it so.
    `call` is None before the call's first ring (and after its end)."""
    if policy is CardPolicy.NONE:
        return None, ()
    if isinstance(event, Ringing):
        call = call or CardsOfCall(event.linkedid, event.direction, event.line, event.number)
        if policy is CardPolicy.RINGING:
            return _show(call, (event.employee,))
        return call, ()
    if call is None:
        return None, ()
    if isinstance(event, StoppedRinging):
        return _hide(call, (event.employee,)) if policy is CardPolicy.RINGING else (call, ())
    if isinstance(event, Answered):
        if event.employee is None:
            return call, ()
        call, hidden = _hide(call, tuple(call.shown - {event.employee}))
        call, shown = _show(call, (event.employee,))
        return call, hidden + shown
    if isinstance(event, TransferredTo):
        changes: tuple[CallCardChange, ...] = ()
        if event.to_employee is not None:
            call, changes = _show(call, (event.to_employee,))
        if event.from_employee is not None and event.from_employee != event.to_employee:
            call, hidden = _hide(call, (event.from_employee,))
            changes += hidden
        return call, changes
    if isinstance(event, Ended):
        return None, _hide(call, tuple(call.shown))[1]
    return call, ()


def _show(call: CardsOfCall, employees: tuple[str, ...]) -> tuple[CardsOfCall, tuple[CallCardChange, ...]]:
    new = tuple(sorted(set(employees) - call.shown))
    if not new:
        return call, ()
    return replace(call, shown=call.shown | set(new)), (_change(call, new, show=True),)


def _hide(call: CardsOfCall, employees: tuple[str, ...]) -> tuple[CardsOfCall, tuple[CallCardChange, ...]]:
    gone = tuple(sorted(set(employees) & call.shown))
    if not gone:
        return call, ()
    return replace(call, shown=call.shown - set(gone)), (_change(call, gone, show=False),)


def _change(call: CardsOfCall, employees: tuple[str, ...], *, show: bool) -> CallCardChange:
    return CallCardChange(call.linkedid, call.number, call.direction, call.line, employees, show)
