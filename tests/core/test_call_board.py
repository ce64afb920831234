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


def _windows(board, *employees):
    return {employee: [(c.linkedid, c.ended) for c in board.calls_of(employee)] for employee in employees}


def test_an_offer_outlives_its_call_on_the_windows_it_rang():
    """The caller hung up while alice's and bob's phones still rang: their legs end first (as
    Asterisk reports them), then the call. The lead to make is still on both windows, marked
    ended; a call with no offer leaves every window."""
    board = CallBoard()
    for event in (ring("alice"), ring("bob"), OFFER, ring("carol", linkedid="c2"),
                  StoppedRinging("c1", "alice"), StoppedRinging("c1", "bob")):
        board.apply(event)
    assert board.apply(Ended("c1", None)) == {"alice", "bob"}
    assert board.apply(Ended("c2", None)) == {"carol"}
    assert _windows(board, "alice", "bob", "carol") == {"alice": [("c1", True)], "bob": [("c1", True)], "carol": []}
    assert board.call("c1").offer is True and board.call("c1").shown_to() == {"alice", "bob"}


def test_an_answered_offer_stays_only_with_who_talked():
    board = CallBoard()
    for event in (ring("alice"), ring("bob"), OFFER, Answered("c1", "bob", AT)):
        board.apply(event)
    assert board.apply(Ended("c1", None)) == {"bob"}
    assert _windows(board, "alice", "bob") == {"alice": [], "bob": [("c1", True)]}


def test_records_made_after_the_end_stay_with_their_maker_and_leave_the_others():
    board = CallBoard()
    for event in (ring("alice"), ring("bob"), OFFER, Ended("c1", None)):
        board.apply(event)
    assert board.apply(RecordsCreated("c1", LEAD, "bob")) == {"alice", "bob"}
    assert _windows(board, "alice", "bob") == {"alice": [], "bob": [("c1", True)]}
    assert board.call("c1").record == LEAD and board.call("c1").offer is False
    assert board.close("c1", "bob") == {"bob"}
    assert board.call("c1") is None


def test_a_second_click_after_the_end_leaves_the_card_with_who_made_the_records():
    """Alice and bob click at once: one command, made by alice's click; bob's answer comes
    second and names the same records."""
    board = CallBoard()
    for event in (ring("alice"), ring("bob"), OFFER, Ended("c1", None), RecordsCreated("c1", LEAD, "alice")):
        board.apply(event)
    assert board.apply(RecordsCreated("c1", LEAD, "bob")) == set()
    assert _windows(board, "alice", "bob") == {"alice": [("c1", True)], "bob": []}


def test_ended_cards_come_after_the_calls_in_progress():
    board = CallBoard()
    for event in (ring("alice"), OFFER, Ended("c1", None), ring("alice", linkedid="c2")):
        board.apply(event)
    assert _windows(board, "alice") == {"alice": [("c2", False), ("c1", True)]}


def test_records_an_admin_made_after_the_end_leave_every_window():
    board = CallBoard()
    for event in (ring("alice"), OFFER, Ended("c1", None)):
        board.apply(event)
    assert board.apply(RecordsCreated("c1", LEAD, "carol")) == {"alice"}
    assert board.call("c1") is None


def test_each_agent_closes_an_ended_card_on_their_own_window_only():
    board = CallBoard()
    for event in (ring("alice"), ring("bob"), OFFER):
        board.apply(event)
    assert board.close("c1", "alice") == set()  # a call in progress cannot be closed
    board.apply(Ended("c1", None))
    assert board.close("c1", "carol") == set()  # not on her window
    assert board.close("c1", "alice") == {"alice"}
    assert _windows(board, "alice", "bob") == {"alice": [], "bob": [("c1", True)]}
    assert board.close("c1", "bob") == {"bob"}
    assert board.call("c1") is None and board.close("c1", "bob") == set()


def test_a_window_keeps_only_its_newest_ended_offers():
    from agi_daemon.core.call_board import ENDED_PER_WINDOW

    board = CallBoard()
    for index in range(ENDED_PER_WINDOW + 3):
        linkedid = f"e{index}"
        board.apply(ring("alice", linkedid=linkedid))
        board.apply(OfferMade(Offer(linkedid, Direction.INCOMING, LINE, CALLER, ("alice",), AT)))
        board.apply(Ended(linkedid, None))
    kept = [c.linkedid for c in board.calls_of("alice")]
    assert sorted(kept) == sorted(f"e{index}" for index in range(3, ENDED_PER_WINDOW + 3))
    assert board.call("e0") is None


@pytest.mark.parametrize("recording, kept_for", [
    ("incoming_missed", {"alice", "bob"}),  # every agent it rang: their legs ended before the call
    ("incoming_busy_then_answered", {"bob"}),  # who answered
    ("incoming_blind_transfer", {"bob"}),  # who it was transferred to
])
def test_over_recorded_asterisk_calls_an_offer_stays_on_the_right_windows(recording, kept_for):
    from tests.core.test_live_calls import replay

    board = CallBoard()
    events = replay(recording)
    [first] = [e for e in events if isinstance(e, Ringing)][:1]
    board.apply(OfferMade(Offer(first.linkedid, first.direction, first.line, first.number, (), first.at)))
    for event in events:
        board.apply(event)
    shown = {employee for employee in ("alice", "bob") if board.calls_of(employee)}
    assert shown == kept_for and board.call(first.linkedid).ended
