"""Live call events derived beside the tracker, over the recorded Asterisk 22 sequences."""
from __future__ import annotations

import pytest

from agi_daemon.asterisk.ami.translate import translate
from agi_daemon.core.live_calls import Answered, Ended, Ringing, StoppedRinging, TransferredTo, live_events
from agi_daemon.core.model import Direction, Disposition
from agi_daemon.core.tracker import TrackerState, step
from tests.fixtures import ami_items

from tests.fakes.rules import make_rules

RULES = make_rules()


def replay(name):
    state, found = TrackerState(), []
    for event in filter(None, map(translate, ami_items(name))):
        before = state
        state, effects = step(RULES, before, event)
        found.extend(live_events(RULES, before, state, event, effects))
    return found


def summary(events):
    words = []
    for event in events:
        match event:
            case Ringing():
                words.append(f"ringing {event.employee}")
            case StoppedRinging():
                words.append(f"stopped {event.employee}")
            case Answered():
                words.append(f"answered {event.employee}")
            case TransferredTo():
                words.append(f"{event.kind.value} {event.from_employee}->{event.to_employee}")
            case Ended():
                words.append(f"ended {event.record.disposition.value}")
    return words


@pytest.mark.parametrize("recording, expected", [
    ("incoming_answered", ["ringing alice", "answered alice", "ended answered"]),
    ("incoming_missed", ["ringing alice", "stopped alice", "ringing bob", "stopped bob", "ended missed"]),
    ("incoming_busy_then_answered", ["ringing alice", "stopped alice", "ringing bob", "answered bob", "ended answered"]),
    ("incoming_blind_transfer", ["ringing alice", "answered alice", "blind alice->bob", "ended answered"]),
    ("incoming_attended_transfer", ["ringing alice", "answered alice", "attended alice->bob", "ended answered"]),
    ("outgoing_answered", ["ringing alice", "answered None", "ended answered"]),
    # the daemon (re)connected mid-call: the call found in the live channels reaches alice's window
    ("incoming_blind_transfer_after_resync", ["ringing alice", "answered alice", "blind alice->bob", "ended answered"]),
])
def test_recorded_call_gives_the_call_window_its_events_in_order(recording, expected):
    assert summary(replay(recording)) == expected


def test_ringing_names_the_line_the_caller_and_the_direction():
    ringing = [e for e in replay("incoming_answered") if isinstance(e, Ringing)]
    [first] = ringing
    assert first.direction is Direction.INCOMING
    assert first.line in RULES.lines and first.number.startswith("+")


def test_ended_carries_the_call_record():
    [ended] = [e for e in replay("incoming_missed") if isinstance(e, Ended)]
    assert ended.record.disposition is Disposition.MISSED and ended.linkedid == ended.record.linkedid
