"""The call log (R12), offers (R3) and the responsible of a record (R10)."""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from agi_daemon.core.model import (
    CallRecord,
    CrmMode,
    Direction,
    Disposition,
    EntityRef,
    EntityType,
    Offer,
    Transfer,
    TransferKind,
)
from agi_daemon.core.ports import CrmRejected
from agi_daemon.crm.embedded import EmbeddedCrm

pytestmark = pytest.mark.databases("sqlite", "postgresql")

LINE = "+33184880000"
CLIENT = "+33612345678"
START = datetime(2024, 5, 1, 9, 30, 0, tzinfo=UTC)


def answered_call(linkedid: str = "1714555800.7") -> CallRecord:
    return CallRecord(
        linkedid=linkedid,
        direction=Direction.INCOMING,
        line=LINE,
        number=CLIENT,
        disposition=Disposition.ANSWERED,
        started_at=START,
        answered_at=START + timedelta(seconds=12),
        ended_at=START + timedelta(seconds=95),
        answered_by="alice",
        employees=("alice", "bob"),
        ring_seconds=12.0,
        talk_seconds=83.0,
        transfers=(Transfer("alice", "bob", TransferKind.BLIND),),
        entity=EntityRef(EntityType.LEAD, 12),
    )


async def test_logged_call_is_listed_with_every_contract_field(crm: EmbeddedCrm) -> None:
    await crm.log_call(answered_call())

    assert await crm.list_records("calls") == [
        {
            "id": 1,
            "direction": "incoming",
            "line": LINE,
            "number": CLIENT,
            "disposition": "answered",
            "answered_by": "alice",
            "ring_seconds": 12.0,
            "talk_seconds": 83.0,
            "transfers": [{"from": "alice", "to": "bob", "kind": "blind"}],
            "entity": "lead:12",
            "linkedid": "1714555800.7",
            "started_at": "2024-05-01T09:30:00+00:00",
            "answered_at": "2024-05-01T09:30:12+00:00",
            "ended_at": "2024-05-01T09:31:35+00:00",
            "employees": ["alice", "bob"],
            "partial": False,
        }
    ]


async def test_call_logged_twice_keeps_only_the_second_record(crm: EmbeddedCrm) -> None:
    await crm.log_call(answered_call())
    missed = replace(
        answered_call(),
        disposition=Disposition.MISSED,
        answered_at=None,
        answered_by=None,
        talk_seconds=0.0,
        transfers=(),
        entity=None,
    )

    await crm.log_call(missed)

    (call,) = await crm.list_records("calls")
    assert call["id"] == 1
    assert (call["disposition"], call["answered_at"], call["answered_by"]) == ("missed", None, None)
    assert (call["transfers"], call["entity"], call["talk_seconds"]) == ([], None, 0.0)


async def test_call_logged_with_keep_existing_leaves_the_first_record(crm: EmbeddedCrm) -> None:
    await crm.log_call(answered_call())
    await crm.log_call(replace(answered_call(), disposition=Disposition.MISSED), keep_existing=True)

    (call,) = await crm.list_records("calls")
    assert call["disposition"] == "answered"


async def test_call_logged_with_keep_existing_is_written_when_first(crm: EmbeddedCrm) -> None:
    await crm.log_call(answered_call(), keep_existing=True)

    (call,) = await crm.list_records("calls")
    assert call["disposition"] == "answered"


async def test_partial_record_yields_to_the_report_and_never_replaces_one(crm: EmbeddedCrm) -> None:
    """A best guess (the call ended while AMI was down) is replaced by the hangup report
    (keep_existing), and written with keep_existing never replaces a real record."""
    guess = replace(answered_call(), disposition=Disposition.MISSED, partial=True)
    await crm.log_call(guess, keep_existing=True)
    await crm.log_call(answered_call(), keep_existing=True)
    (call,) = await crm.list_records("calls")
    assert (call["disposition"], call["partial"]) == ("answered", False)

    await crm.log_call(guess, keep_existing=True)
    (call,) = await crm.list_records("calls")
    assert (call["disposition"], call["partial"]) == ("answered", False)


async def test_call_times_in_another_zone_are_listed_in_utc(crm: EmbeddedCrm) -> None:
    paris = timezone(timedelta(hours=2))
    call = replace(answered_call(), started_at=datetime(2024, 5, 1, 11, 30, tzinfo=paris))

    await crm.log_call(call)

    (listed,) = await crm.list_records("calls")
    assert listed["started_at"] == "2024-05-01T09:30:00+00:00"


async def test_offer_recorded_twice_for_one_call_is_kept_once(crm: EmbeddedCrm) -> None:
    offer = Offer("1714555800.7", Direction.INCOMING, LINE, CLIENT, ("alice", "bob"), START)

    await crm.record_offer(offer)
    await crm.record_offer(replace(offer, employees=("carol",)))

    assert await crm.list_records("offers") == [
        {
            "id": 1,
            "linkedid": "1714555800.7",
            "direction": "incoming",
            "line": LINE,
            "phone": CLIENT,
            "employees": ["alice", "bob"],
            "status": "open",
            "created_at": "2024-05-01T09:30:00+00:00",
        }
    ]


async def test_set_responsible_moves_every_record_of_the_call(
    crm: EmbeddedCrm, new_client
) -> None:
    created = await crm.create_records(new_client(CLIENT, "1714555800.7", mode=CrmMode.SIMPLE))

    await crm.set_responsible(created.all, "bob")

    for kind in ("leads", "deals", "contacts"):
        assert [record["responsible"] for record in await crm.list_records(kind)] == ["bob"]
    match = await crm.find_by_phone(CLIENT)
    assert match is not None and match.responsible == "bob"


async def test_set_responsible_of_a_missing_record_is_rejected_and_changes_nothing(
    crm: EmbeddedCrm, new_client
) -> None:
    created = await crm.create_records(new_client(CLIENT, "1714555800.7"))

    with pytest.raises(CrmRejected):
        await crm.set_responsible((created.lead, EntityRef(EntityType.DEAL, 99)), "bob")

    (lead,) = await crm.list_records("leads")
    assert lead["responsible"] == "alice"


@pytest.mark.databases("sqlite", "postgresql")
async def test_a_refused_write_names_its_reason_but_no_number_even_in_a_logged_traceback(crm, caplog):
    """SQLAlchemy's error names the statement's parameters (and PostgreSQL's DETAIL the key):
    the CRM's error keeps the database's reason with the number masked, and carries no cause
    that a logged traceback would print."""
    from sqlalchemy import insert

    from agi_daemon.crm.tables import calls

    row = {"linkedid": "1714555800.9", "direction": "incoming", "line": "+33184880000", "number": "+33611000012",
           "disposition": "answered", "employees": [], "started_at": datetime(2026, 1, 1, tzinfo=UTC),
           "ended_at": datetime(2026, 1, 1, tzinfo=UTC), "ring_seconds": 0.0, "talk_seconds": 0.0, "transfers": []}

    def twice(conn):
        conn.execute(insert(calls).values(row))
        conn.execute(insert(calls).values(row))

    with pytest.raises(CrmRejected) as refused:
        await crm.transaction("log a call", twice, write=True)
    try:
        raise refused.value
    except CrmRejected:
        logging.getLogger("tests").exception("the write was refused")
    assert "611000012" not in caplog.text and "611000012" not in str(refused.value)
    assert "unique" in str(refused.value).lower() and "log a call" in str(refused.value)
