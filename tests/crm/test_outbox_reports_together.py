"""A call's two reports (the hangup handler's, then tracking's) reach the outbox at the same
moment: the second waits for the first's transaction and is stored and applied at once too,
in order, instead of waiting in the outbox for the worker (one transaction, not two)."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from agi_daemon.core.commands import CallReport, CreateCallRecords, LogCall
from agi_daemon.core.model import CallRecord, Direction, Disposition
from agi_daemon.crm.outbox import Delivery, Outbox
from tests.crm.test_outbox import delivering, rows

pytestmark = pytest.mark.databases("sqlite", "postgresql")

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PHONE = "+33611000031"


def report(linkedid: str, talk: float) -> CallRecord:
    return CallRecord(linkedid, Direction.INCOMING, "+33184880000", PHONE, Disposition.ANSWERED, AT,
                      AT + timedelta(seconds=30), answered_at=AT, answered_by="alice", employees=("alice",),
                      talk_seconds=talk)


@pytest.mark.parametrize("first", [CallReport.HANGUP, CallReport.TRACKED])
async def test_two_reports_of_one_call_together_are_both_applied_before_their_submits_return(crm, new_client, first):
    outbox = Outbox(crm, Delivery(crm))
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client(PHONE, "T1")))
        hangup = LogCall(report("T1", 20.0), CallReport.HANGUP, PHONE)
        tracked = LogCall(report("T1", 25.0), CallReport.TRACKED, PHONE)
        ordered = (hangup, tracked) if first is CallReport.HANGUP else (tracked, hangup)
        await asyncio.gather(*(outbox.submit(command) for command in ordered))
        stored = await rows(crm)  # before the worker could deliver anything
    assert {key: status for key, (status, _, _) in stored.items()} == {
        "T1/records": "delivered", "T1/call/hangup": "delivered", "T1/call/tracked": "delivered"}
    [lead] = await crm.list_records("leads")
    [logged] = await crm.list_records("calls")
    assert logged["talk_seconds"] == 25.0 and logged["entity"] == f"lead:{lead['id']}"  # tracking's report holds
