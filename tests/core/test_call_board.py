"""The call board: which calls each agent's window shows, as live call events arrive."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agi_daemon.core.call_board import CallBoard
from agi_daemon.core.live_calls import (
    Answered, Ended, OfferMade, RecordsCreated, Ringing, StoppedRinging, TransferredTo,
)
from agi_daemon.core.model import Direction, EntityRef, EntityType, Offer, TransferKind

AT = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
LINE, CALLER = "+33472000000", "+33699887766"
LEAD = EntityRef(EntityType.LEAD, 7)


def ring(employee, linkedid="c1", direction=Direction.INCOMING):
    return Ringing(linkedid, employee, direction, LINE, CALLER, AT)


OFFER = OfferMade(Offer("c1", Direction.INCOMING, LINE, CALLER, ("alice", "bob"), AT))

# (events, {employee: linkedids on their window}, changed by the last event)
CASES = {
    "ringing shows the call": ([ring("alice")], {"alice": ["c1"], "bob": []}, {"alice"}),
    "ring all shows it to each": ([ring("alice"), ring("bob")], {"alice": ["c1"], "bob": ["c1"]}, {"bob"}),
    "rang out leaves the window": ([ring("alice"), StoppedRinging("c1", "alice"), ring("bob")],
                                   {"alice": [], "bob": ["c1"]}, {"bob"}),
    "the one ringing agent answers: their card turns answered": ([ring("alice"), Answered("c1", "alice", AT)],
                                                                 {"alice": ["c1"], "bob": []}, {"alice"}),
    "answered leaves the others": ([ring("alice"), ring("bob"), Answered("c1", "bob", AT)],
                                   {"alice": [], "bob": ["c1"]}, {"alice", "bob"}),
    "transfer moves it": ([ring("alice"), Answered("c1", "alice", AT),
                           TransferredTo("c1", "alice", "bob", TransferKind.BLIND)],
                          {"alice": [], "bob": ["c1"]}, {"alice", "bob"}),
    "ended leaves every window": ([ring("alice"), ring("bob"), Ended("c1", None)],
                                  {"alice": [], "bob": []}, {"alice", "bob"}),
    "outgoing shows the caller's call": ([ring("alice", direction=Direction.OUTGOING), Answered("c1", None, AT)],
                                         {"alice": ["c1"], "bob": []}, {"alice"}),
    "events of unknown calls change nothing": ([Answered("zz", "bob", AT), Ended("zz", None)],
                                               {"alice": [], "bob": []}, set()),
    "a late ring after the answer is ignored": ([ring("alice"), Answered("c1", "alice", AT), ring("bob")],
                                                {"alice": ["c1"], "bob": []}, set()),
}


@pytest.mark.parametrize("events, windows, changed", CASES.values(), ids=CASES.keys())
def test_board_shows_each_call_on_the_right_windows(events, windows, changed):
    board = CallBoard()
    for event in events[:-1]:
        board.apply(event)
    assert board.apply(events[-1]) == changed
    assert {employee: [c.linkedid for c in board.calls_of(employee)] for employee in windows} == windows


@pytest.mark.parametrize("order", ["offer first", "ring first"])
def test_offer_reaches_the_card_whether_it_comes_before_or_after_the_ring(order):
    board = CallBoard()
    events = [OFFER, ring("alice")] if order == "offer first" else [ring("alice"), OFFER]
    for event in events:
        board.apply(event)
    assert board.call("c1").offer is True


def test_created_records_close_the_offer_and_name_the_record():
    board = CallBoard()
    for event in (ring("alice"), OFFER):
        board.apply(event)
    assert board.apply(RecordsCreated("c1", LEAD, "alice")) == {"alice"}
    call = board.call("c1")
    assert call.offer is False and call.record == LEAD
    board.apply(OFFER)  # a repeated offer does not reopen it
    assert board.call("c1").offer is False


def test_offers_of_calls_that_never_ring_are_forgotten_beyond_the_memory():
    from agi_daemon.core.call_board import EARLY_MEMORY

    board = CallBoard()
    for index in range(EARLY_MEMORY + 10):
        board.apply(OfferMade(Offer(f"x{index}", Direction.INCOMING, LINE, CALLER, ("alice",), AT)))
    board.apply(Ringing("x0", "alice", Direction.INCOMING, LINE, CALLER, AT))
    assert board.call("x0").offer is False  # forgotten: the oldest went first
    board.apply(Ringing(f"x{EARLY_MEMORY + 9}", "alice", Direction.INCOMING, LINE, CALLER, AT))
    assert board.call(f"x{EARLY_MEMORY + 9}").offer is True
