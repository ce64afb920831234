"""The call-log merge rule and the commands' idempotency keys, as tables."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from agi_daemon.core.commands import (
    CallLedger, CallReport, ChangeResponsible, CreateCallRecords, LogCall, RecordOffer, merge_call_log, supersedes,
    waits_for_tracking,
)
from agi_daemon.core.model import (
    CallRecord, CreatedRecords, CrmMode, Direction, Disposition, EntityRef, EntityType, Offer, RecordPlan,
)

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CALL = CallRecord("L1", Direction.INCOMING, "+33184880000", "+33611223344", Disposition.ANSWERED, AT,
                  AT + timedelta(seconds=60))
TRACKED = replace(CALL, answered_by="bob")
HANGUP = replace(CALL, answered_by="alice")
PARTIAL = replace(CALL, disposition=Disposition.MISSED, partial=True)

T, H, P = CallReport.TRACKED, CallReport.HANGUP, CallReport.PARTIAL


@pytest.mark.parametrize("existing, report, kind, kept", [
    (None, TRACKED, T, TRACKED),
    (None, HANGUP, H, HANGUP),
    (None, PARTIAL, P, PARTIAL),
    (HANGUP, TRACKED, T, TRACKED),  # tracking's full report wins over the hangup handler's
    (PARTIAL, TRACKED, T, TRACKED),
    (TRACKED, TRACKED, T, TRACKED),
    (TRACKED, HANGUP, H, None),  # the hangup report yields to tracking's
    (HANGUP, HANGUP, H, None),  # a second hangup report changes nothing
    (PARTIAL, HANGUP, H, HANGUP),  # ... but replaces a partial guess
    (TRACKED, PARTIAL, P, None),  # a partial guess never replaces anything
    (HANGUP, PARTIAL, P, None),
    (PARTIAL, PARTIAL, P, None),
], ids=lambda value: getattr(value, "answered_by", None) or str(value))
def test_call_log_merge_keeps_the_best_report(existing, report, kind, kept):
    assert merge_call_log(existing, report, kind) == kept


PLAN = RecordPlan(CrmMode.CLASSIC, "+33611223344", "06 11 22 33 44", "CALL", "alice", "L1", "+33184880000",
                  Direction.INCOMING)


@pytest.mark.parametrize("command, key, lane", [
    (CreateCallRecords(PLAN), "L1/records", "+33611223344"),
    (RecordOffer(Offer("L1", Direction.INCOMING, "+33184880000", "+33611223344", ("alice",), AT)), "L1/offer",
     "+33611223344"),
    (LogCall(CALL, T, "+33611223344"), "L1/call/tracked", "+33611223344"),
    (LogCall(CALL, H, None), "L1/call/hangup", "+33611223344"),
    (ChangeResponsible("L1", "+33611223344", "bob", 2), "L1/responsible/2/bob", "+33611223344"),
])
def test_each_command_has_a_key_from_the_linkedid_and_the_external_number_as_lane(command, key, lane):
    assert (command.key, command.lane, command.linkedid) == (key, lane, "L1")


def test_ledger_logs_a_call_on_what_it_created_else_on_what_it_joined():
    lead, deal = EntityRef(EntityType.LEAD, 1), EntityRef(EntityType.DEAL, 2)
    assert CallLedger("L1", created=CreatedRecords(lead, deal)).entity == deal
    assert CallLedger("L1", joined=lead).entity == lead
    assert CallLedger("L1").entity is None


OTHER_CALL = replace(TRACKED, linkedid="L2")


@pytest.mark.parametrize("new, waiting, moot", [
    (LogCall(TRACKED, T, "+33611223344"), LogCall(HANGUP, H, "+33611223344"), True),  # tracking's report wins
    (LogCall(HANGUP, H, "+33611223344"), LogCall(PARTIAL, P, "+33611223344"), True),  # ... and so over a guess
    (LogCall(TRACKED, T, "+33611223344"), LogCall(PARTIAL, P, "+33611223344"), True),
    (LogCall(HANGUP, H, "+33611223344"), LogCall(TRACKED, T, "+33611223344"), False),  # tracking's stays
    (LogCall(PARTIAL, P, "+33611223344"), LogCall(HANGUP, H, "+33611223344"), False),  # a guess replaces nothing
    (LogCall(OTHER_CALL, T, "+33611223344"), LogCall(HANGUP, H, "+33611223344"), False),  # another call
    (LogCall(HANGUP, H, "+33611223344"), LogCall(HANGUP, H, "+33611223344"), False),  # the same report
    (ChangeResponsible("L1", "+33611223344", "bob", 1), LogCall(HANGUP, H, "+33611223344"), False),
    (LogCall(TRACKED, T, "+33611223344"), ChangeResponsible("L1", "+33611223344", "bob", 1), False),
], ids=["tracked-over-hangup", "hangup-over-partial", "tracked-over-partial", "hangup-after-tracked",
        "partial-after-hangup", "other-call", "same-report", "not-a-report", "not-a-waiting-report"])
def test_a_later_report_supersedes_a_waiting_one_the_call_log_would_not_keep(new, waiting, moot):
    assert supersedes(new, waiting) is moot


@pytest.mark.parametrize("command, waits", [
    (LogCall(HANGUP, H, "+33611223344"), True),  # the dialplan's report: tracking's may follow
    (LogCall(TRACKED, T, "+33611223344"), False),
    (LogCall(PARTIAL, P, "+33611223344"), False),
    (CreateCallRecords(PLAN), False),
])
def test_only_the_hangup_report_waits_for_trackings(command, waits):
    assert waits_for_tracking(command) is waits
