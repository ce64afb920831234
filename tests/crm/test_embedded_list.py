"""`crm add` and `crm list --json`: the JSON contract of the command line and the phone filter."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agi_daemon.core.model import (
    CallRecord,
    CreateWith,
    CrmMode,
    Direction,
    Disposition,
    Offer,
)
from agi_daemon.core.ports import CrmRejected
from agi_daemon.crm.embedded import EmbeddedCrm

pytestmark = pytest.mark.databases("sqlite", "postgresql")

ALICE_CLIENT = "+33612000001"
OTHER = "+33612000002"
MOMENT = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


async def test_added_contact_is_returned_as_the_list_shows_it(crm: EmbeddedCrm) -> None:
    added = await crm.add_record("contact", "Jean Durand", ALICE_CLIENT, "alice")

    assert added == {
        "id": 1,
        "type": "contact",
        "name": "Jean Durand",
        "phones": [ALICE_CLIENT],
        "responsible": "alice",
        "source": None,
        "status": None,
        "created_by_call": None,
    }
    assert await crm.list_records("contacts") == [added]


async def test_added_lead_and_company_follow_the_contract(crm: EmbeddedCrm) -> None:
    lead = await crm.add_record("lead", "Prospect", ALICE_CLIENT, None)
    company = await crm.add_record("company", "Durand SARL", OTHER, "bob", source="WEB")

    assert lead == {
        "id": 1, "type": "lead", "name": "Prospect", "phones": [ALICE_CLIENT],
        "responsible": None, "source": None, "status": "NEW", "created_by_call": None,
        "converted_to": [],
    }
    assert company == {
        "id": 1, "type": "company", "name": "Durand SARL", "phones": [OTHER],
        "responsible": "bob", "source": "WEB", "status": None, "created_by_call": None,
    }


async def test_add_with_a_number_not_in_e164_is_rejected(crm: EmbeddedCrm) -> None:
    with pytest.raises(CrmRejected):
        await crm.add_record("contact", "Jean", "06 12 00 00 01", None)


async def test_lists_are_json_arrays_ordered_by_id(crm: EmbeddedCrm) -> None:
    for index in range(3):
        await crm.add_record("contact", f"Contact {index}", f"+3361200000{index}", None)

    listed = await crm.list_records("contacts")

    assert [record["id"] for record in listed] == [1, 2, 3]
    assert json.loads(json.dumps(listed)) == listed


async def test_phone_filter_keeps_records_deals_calls_and_offers_with_that_number(
    crm: EmbeddedCrm, new_client
) -> None:
    await crm.add_record("contact", "Jean", OTHER, "bob")
    await crm.add_record("lead", "Other lead", OTHER, None)
    await crm.create_records(new_client(OTHER, "17000.1", mode=CrmMode.SIMPLE))
    await crm.create_records(
        new_client(ALICE_CLIENT, "17000.2", mode=CrmMode.SIMPLE, create_with=CreateWith.COMPANY)
    )
    await crm.create_records(new_client(ALICE_CLIENT, "17000.3"))
    for linkedid, number in (("17000.1", OTHER), ("17000.2", ALICE_CLIENT)):
        await crm.log_call(CallRecord(linkedid, Direction.INCOMING, "+33184880000", number,
                                      Disposition.MISSED, MOMENT, MOMENT))
        await crm.record_offer(Offer(linkedid, Direction.INCOMING, "+33184880000", number,
                                     ("alice",), MOMENT))

    def ids(records: list[dict]) -> list[object]:
        return [(record.get("type"), record["id"]) for record in records]

    assert ids(await crm.list_records("contacts", phone=ALICE_CLIENT)) == []
    assert ids(await crm.list_records("companies", phone=ALICE_CLIENT)) == [("company", 1)]
    assert ids(await crm.list_records("deals", phone=ALICE_CLIENT)) == [("deal", 2)]
    assert ids(await crm.list_records("leads", phone=ALICE_CLIENT)) == [("lead", 3), ("lead", 4)]
    assert ids(await crm.list_records("calls", phone=ALICE_CLIENT)) == [(None, 2)]
    assert ids(await crm.list_records("offers", phone=ALICE_CLIENT)) == [(None, 2)]
    assert ids(await crm.list_records("contacts", phone=OTHER)) == [("contact", 1), ("contact", 2)]
    assert ids(await crm.list_records("deals", phone=OTHER)) == [("deal", 1)]
    assert await crm.list_records("leads", phone="+33700000000") == []


async def test_deal_lists_the_phones_of_its_contact(crm: EmbeddedCrm, new_client) -> None:
    await crm.add_record("contact", "Someone", OTHER, None)
    await crm.create_records(new_client(ALICE_CLIENT, "17000.1", mode=CrmMode.SIMPLE))

    (deal,) = await crm.list_records("deals")

    assert deal == {
        "id": 1,
        "type": "deal",
        "name": f"Call from {ALICE_CLIENT}",
        "phones": [ALICE_CLIENT],
        "responsible": "alice",
        "source": "CALL",
        "status": "NEW",
        "created_by_call": "17000.1",
        "pipeline": "general",
        "stage": "NEW",
        "contact": "contact:2",
        "company": None,
    }


async def test_unknown_list_kind_is_refused(crm: EmbeddedCrm) -> None:
    with pytest.raises(ValueError):
        await crm.list_records("employees")  # type: ignore[arg-type]
