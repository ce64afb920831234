"""When Bitrix24's own call card is shown and hidden (crm.bitrix24.card), as tables: each row
is a call's live events and the show/hide commands they give, per policy."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agi_daemon.core.call_cards import CardPolicy, card_changes
from agi_daemon.core.commands import CallCardChange
from agi_daemon.core.live_calls import Answered, Ended, RecordsCreated, Ringing, StoppedRinging, TransferredTo
from agi_daemon.core.model import Direction, EntityRef, EntityType, TransferKind

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
LINE, CALLER = "+33184880000", "+33611223344"


def ring(employee: str) -> Ringing:
    return Ringing("L1", employee, Direction.INCOMING, LINE, CALLER, AT)


ANSWER_BOB = Answered("L1", "bob", AT)
END = Ended("L1", None)


def show(*employees: str) -> tuple[str, ...]:
    return ("show", *employees)


def hide(*employees: str) -> tuple[str, ...]:
    return ("hide", *employees)


@pytest.mark.parametrize("policy, events, expected", [
    # ringing: whoever rings sees it; it leaves those who did not take the call
    (CardPolicy.RINGING, [ring("alice"), ring("bob"), ANSWER_BOB, END],
     [show("alice"), show("bob"), hide("alice"), hide("bob")]),
    (CardPolicy.RINGING, [ring("alice"), StoppedRinging("L1", "alice"), ring("bob"), ANSWER_BOB, END],
     [show("alice"), hide("alice"), show("bob"), hide("bob")]),
    (CardPolicy.RINGING, [ring("alice"), ring("alice"), END], [show("alice"), hide("alice")]),  # shown once
    (CardPolicy.RINGING, [ring("alice"), StoppedRinging("L1", "alice"), END], [show("alice"), hide("alice")]),
    # a transfer: the target sees it, who transferred no longer
    (CardPolicy.RINGING, [ring("alice"), Answered("L1", "alice", AT),
                          TransferredTo("L1", "alice", "bob", TransferKind.BLIND), END],
     [show("alice"), show("bob"), hide("alice"), hide("bob")]),
    # answered: only who answers, when they answer
    (CardPolicy.ANSWERED, [ring("alice"), ring("bob"), ANSWER_BOB, END], [show("bob"), hide("bob")]),
    (CardPolicy.ANSWERED, [ring("alice"), StoppedRinging("L1", "alice"), END], []),  # missed: never shown
    (CardPolicy.ANSWERED, [ring("alice"), Answered("L1", "alice", AT),
                           TransferredTo("L1", "alice", "bob", TransferKind.ATTENDED), END],
     [show("alice"), show("bob"), hide("alice"), hide("bob")]),
    (CardPolicy.ANSWERED, [ring("alice"), Answered("L1", None, AT), END], []),  # not answered by an employee
    # none: never
    (CardPolicy.NONE, [ring("alice"), ANSWER_BOB, END], []),
    # events of a call never rung (or after its end) show nothing
    (CardPolicy.RINGING, [ANSWER_BOB, StoppedRinging("L1", "bob"), END], []),
    (CardPolicy.RINGING, [ring("alice"), RecordsCreated("L1", EntityRef(EntityType.LEAD, 1), "alice"), END],
     [show("alice"), hide("alice")]),
], ids=["ringing-two-rung", "ringing-in-order", "ringing-twice", "ringing-missed", "ringing-transfer",
        "answered-two-rung", "answered-missed", "answered-transfer", "answered-by-nobody", "none",
        "never-rung", "other-events"])
def test_call_card_follows_the_calls_events(policy, events, expected):
    call, given = None, []
    for event in events:
        call, changes = card_changes(policy, call, event)
        given.extend(changes)
    assert [("show" if change.show else "hide", *change.employees) for change in given] == expected
    assert call is None  # forgotten at the end
    assert all(change.lane == CALLER and change.line == LINE for change in given)


def test_each_change_has_its_own_key_in_the_calls_lane():
    changes = [CallCardChange("L1", CALLER, Direction.INCOMING, LINE, ("bob", "alice"), True),
               CallCardChange("L1", CALLER, Direction.INCOMING, LINE, ("alice", "bob"), False)]
    assert [change.key for change in changes] == ["L1/card/show/alice+bob", "L1/card/hide/alice+bob"]
