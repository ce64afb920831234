"""Records created by a call from a new client (R1, R5, R9, R11), once per call."""
from __future__ import annotations

import asyncio

import pytest

from agi_daemon.core.model import CreatedRecords, CreateWith, CrmMode, EntityRef, EntityType
from agi_daemon.crm.embedded import EmbeddedCrm

pytestmark = pytest.mark.databases("sqlite", "postgresql")

PHONE = "+33612345678"
LINKEDID = "1700000000.42"


async def test_classic_mode_call_creates_one_new_lead(crm: EmbeddedCrm, new_client) -> None:
    created = await crm.create_records(new_client(PHONE, LINKEDID, responsible="alice"))

    assert created == CreatedRecords(lead=EntityRef(EntityType.LEAD, 1))
    assert await crm.list_records("leads") == [
        {
            "id": 1,
            "type": "lead",
            "name": f"Call from {PHONE}",
            "phones": [PHONE],
            "responsible": "alice",
            "source": "CALL",
            "status": "NEW",
            "created_by_call": LINKEDID,
            "converted_to": [],
        }
    ]
    assert await crm.list_records("deals") == []
    assert await crm.list_records("contacts") == []
    assert await crm.find_by_phone(PHONE) is not None


async def test_simple_mode_with_contact_creates_converted_lead_deal_and_contact(
    crm: EmbeddedCrm, new_client
) -> None:
    plan = new_client(PHONE, LINKEDID, mode=CrmMode.SIMPLE, pipeline="sales", responsible="bob")

    created = await crm.create_records(plan)

    assert created == CreatedRecords(
        lead=EntityRef(EntityType.LEAD, 1),
        deal=EntityRef(EntityType.DEAL, 1),
        contact=EntityRef(EntityType.CONTACT, 1),
    )
    common = {"name": f"Call from {PHONE}", "phones": [PHONE], "responsible": "bob",
              "source": "CALL", "created_by_call": LINKEDID}
    assert await crm.list_records("leads") == [
        {"id": 1, "type": "lead", **common, "status": "CONVERTED",
         "converted_to": ["deal:1", "contact:1"]}
    ]
    assert await crm.list_records("deals") == [
        {"id": 1, "type": "deal", **common, "status": "NEW", "pipeline": "sales",
         "stage": "NEW", "contact": "contact:1", "company": None}
    ]
    assert await crm.list_records("contacts") == [
        {"id": 1, "type": "contact", **common, "status": None}
    ]
    assert await crm.list_records("companies") == []


async def test_simple_mode_with_company_creates_deal_linked_to_the_company(
    crm: EmbeddedCrm, new_client
) -> None:
    plan = new_client(PHONE, LINKEDID, mode=CrmMode.SIMPLE, create_with=CreateWith.COMPANY)

    created = await crm.create_records(plan)

    assert created == CreatedRecords(
        lead=EntityRef(EntityType.LEAD, 1),
        deal=EntityRef(EntityType.DEAL, 1),
        company=EntityRef(EntityType.COMPANY, 1),
    )
    (deal,) = await crm.list_records("deals")
    assert (deal["contact"], deal["company"], deal["phones"]) == (None, "company:1", [PHONE])
    (lead,) = await crm.list_records("leads")
    assert lead["converted_to"] == ["deal:1", "company:1"]
    assert await crm.list_records("contacts") == []
    match = await crm.find_by_phone(PHONE)
    assert match is not None and match.entity == EntityRef(EntityType.COMPANY, 1)


async def test_second_call_from_the_same_number_finds_the_new_contact(
    crm: EmbeddedCrm, new_client
) -> None:
    created = await crm.create_records(new_client(PHONE, LINKEDID, mode=CrmMode.SIMPLE))

    match = await crm.find_by_phone(PHONE)

    assert match is not None
    assert (match.entity, match.responsible) == (created.contact, "alice")


async def test_same_call_created_twice_returns_the_first_records(
    crm: EmbeddedCrm, new_client
) -> None:
    first = await crm.create_records(new_client(PHONE, LINKEDID, mode=CrmMode.SIMPLE))

    second = await crm.create_records(
        new_client(PHONE, LINKEDID, mode=CrmMode.SIMPLE, responsible="bob")
    )

    assert second == first
    assert len(await crm.list_records("leads")) == 1
    assert len(await crm.list_records("deals")) == 1
    assert len(await crm.list_records("contacts")) == 1
    (contact,) = await crm.list_records("contacts")
    assert contact["responsible"] == "alice"


async def test_same_call_other_number_creates_other_records(crm: EmbeddedCrm, new_client) -> None:
    first = await crm.create_records(new_client(PHONE, LINKEDID))

    second = await crm.create_records(new_client("+33698765432", LINKEDID))

    assert first.lead != second.lead


async def test_records_created_by_call_returns_them_or_none(crm: EmbeddedCrm, new_client) -> None:
    created = await crm.create_records(new_client(PHONE, LINKEDID, mode=CrmMode.SIMPLE))

    assert await crm.records_created_by_call(LINKEDID) == created
    assert await crm.records_created_by_call("1700000000.99") is None


async def test_concurrent_lookups_and_creations_never_hit_a_locked_database(
    crm: EmbeddedCrm, new_client
) -> None:
    async def call(index: int) -> CreatedRecords:
        phone = f"+336120000{index % 20:02d}"
        await crm.find_by_phone(phone)
        created = await crm.create_records(
            new_client(phone, f"17000.{index % 40}", mode=CrmMode.SIMPLE)
        )
        await crm.find_by_phone(phone)
        return created

    results = await asyncio.gather(*(call(index) for index in range(120)))

    # 40 distinct (linkedid, phone) pairs; each retry of a pair returned the same records
    assert len({result.lead for result in results}) == 40
    assert len(await crm.list_records("deals")) == 40
    assert len(await crm.list_records("leads")) == 40
