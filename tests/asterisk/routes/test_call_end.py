"""The call-end route's edge translation: the hangup handler's AGI arguments -> HangupReport."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agi_daemon.asterisk.routes.call_end import hangup_report
from agi_daemon.core.model import Direction
from agi_daemon.core.rules import CallEntry


def test_hangup_arguments_become_a_typed_report():
    report = hangup_report({"linkedid": "L1", "status": "ok", "direction": "outgoing", "exten": "0611223344",
                            "callerid": "101", "dialstatus": "answer", "answered_ms": "12500",
                            "peer": "0611223344@trunk", "t0": "1764000000.250"})
    assert report.entry == CallEntry(Direction.OUTGOING, "0611223344", "101")
    assert (report.linkedid, report.status, report.dialstatus, report.peer) == ("L1", "ok", "ANSWER", "0611223344@trunk")
    assert report.answered_seconds == 12.5
    assert report.started_at == datetime(2025, 11, 24, 16, 0, 0, 250000, tzinfo=timezone.utc)


@pytest.mark.parametrize("values", [{}, {"direction": "sideways", "t0": "yesterday", "answered_ms": "x"}, {"t0": "1e300"}])
def test_missing_or_garbled_arguments_give_an_incoming_report_with_unknown_times(values):
    report = hangup_report(values, fallback_linkedid="1700000000.1")
    assert report.linkedid == "1700000000.1" and report.direction is Direction.INCOMING
    assert report.started_at is None and report.answered_seconds is None
