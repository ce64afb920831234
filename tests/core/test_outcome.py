from datetime import datetime, timezone

import pytest

from agi_daemon.core.decisions import route_for
from agi_daemon.core.model import Direction, Disposition, EntityRef, EntityType
from agi_daemon.core.outcome import HangupReport, call_record, disposition_for, employee_for_peer
from agi_daemon.core.rules import CallEntry, identify

from tests.fakes.rules import CLIENT, PARIS, make_rules

T0 = 1_764_000_000.250
END = datetime.fromtimestamp(T0 + 30, tz=timezone.utc)


@pytest.mark.parametrize(
    "dialstatus, disposition",
    [("ANSWER", Disposition.ANSWERED), ("NOANSWER", Disposition.MISSED), ("CANCEL", Disposition.MISSED),
     ("", Disposition.MISSED), ("BUSY", Disposition.BUSY), ("CHANUNAVAIL", Disposition.FAILED),
     ("CONGESTION", Disposition.FAILED), ("SOMETHING-NEW", Disposition.FAILED)],
)
def test_dialstatus_maps_to_disposition(dialstatus, disposition):
    assert disposition_for(dialstatus) is disposition


@pytest.mark.parametrize("peer, employee", [("102@employees", "bob"), ("Local/101@employees", "alice"), ("103@employees", None), ("", None)])
def test_answering_peer_maps_to_employee(peer, employee):
    assert employee_for_peer(make_rules(), peer) == employee


INCOMING = CallEntry(Direction.INCOMING, "0184880000", CLIENT)
OUTGOING = CallEntry(Direction.OUTGOING, CLIENT, "101")


def report(**values):
    base = {"linkedid": "L1", "status": "ok", "entry": INCOMING, "dialstatus": "ANSWER", "answered_seconds": 12.5,
            "peer": "102@employees", "started_at": datetime.fromtimestamp(T0, tz=timezone.utc)}
    return HangupReport(**{**base, **values})


def test_answered_call_record_has_ring_and_talk_seconds_and_who_answered():
    rules = make_rules()
    call = identify(rules, INCOMING, "L1")
    lead = EntityRef(EntityType.LEAD, 3)
    record = call_record(rules, call, report(), route_for(rules, call, None)[0], lead, END)
    assert record.disposition is Disposition.ANSWERED
    assert record.answered_by == "bob"
    assert record.talk_seconds == pytest.approx(12.5)
    assert record.ring_seconds == pytest.approx(17.5)
    assert record.employees == ("alice", "bob")
    assert (record.line, record.number, record.entity) == (PARIS, CLIENT, lead)


def test_missed_call_record_rings_the_whole_time_and_nobody_answered():
    rules = make_rules()
    call = identify(rules, INCOMING, "L1")
    record = call_record(rules, call, report(dialstatus="NOANSWER", answered_seconds=None, peer=""), None, None, END)
    assert record.disposition is Disposition.MISSED
    assert record.answered_by is None and record.answered_at is None
    assert record.ring_seconds == pytest.approx(30.0) and record.talk_seconds == 0.0


def test_report_without_start_or_answer_time_ends_at_hangup():
    rules = make_rules()
    call = identify(rules, OUTGOING, "L1")
    record = call_record(rules, call, report(entry=OUTGOING, started_at=None, answered_seconds=None), None, None, END)
    assert record.started_at == END and record.employees == ("alice",)


def test_call_routing_did_not_decide_lists_only_who_answered():
    rules = make_rules()
    call = identify(rules, INCOMING, "L1")
    record = call_record(rules, call, report(), None, None, END)
    assert record.employees == ("bob",) and record.answered_by == "bob"


@pytest.mark.parametrize(
    "template, dial_string, number",
    [
        ("Local/{number}@trunk", "0655443322@trunk", "0655443322"),
        ("PJSIP/{number}@trunk", "+33655443322@trunk", "+33655443322"),
        ("PJSIP/{number}@trunk", "PJSIP/0655443322@trunk", "0655443322"),
        ("PJSIP/{number}@trunk", "101", None),
        ("PJSIP/{number}@trunk", "101@employees", None),
        ("PJSIP/{number}@trunk", "@trunk", None),
        ("Local/{number}@trunk", "0655&0666@trunk", None),
    ],
)
def test_trunk_dial_string_gives_back_the_dialled_number(template, dial_string, number):
    from dataclasses import replace

    from agi_daemon.core.model import Dialing
    from agi_daemon.core.outcome import trunk_number

    rules = replace(make_rules(), dialing=Dialing("Local/{extension}@employees", template))
    assert trunk_number(rules, dial_string) == number
