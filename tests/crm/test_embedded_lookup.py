"""Who a number belongs to (R6): contact first, then company, then an unconverted lead."""
from __future__ import annotations

import pytest

from agi_daemon.core.model import CrmMode, EntityRef, EntityType, Match
from agi_daemon.crm.embedded import EmbeddedCrm

pytestmark = pytest.mark.databases("sqlite", "postgresql")

PHONE = "+33612345678"


async def test_unknown_number_finds_nothing(crm: EmbeddedCrm) -> None:
    await crm.add_record("contact", "Someone else", "+33699999999", "bob")

    assert await crm.find_by_phone(PHONE) is None


async def test_number_on_lead_company_and_contact_finds_the_contact(crm: EmbeddedCrm) -> None:
    await crm.add_record("lead", "Lead Durand", PHONE, "carol")
    await crm.add_record("company", "Durand SARL", PHONE, "bob")
    await crm.add_record("contact", "Jean Durand", PHONE, "alice")

    assert await crm.find_by_phone(PHONE) == Match(
        EntityRef(EntityType.CONTACT, 1), "alice", "Jean Durand"
    )


async def test_number_on_lead_and_company_finds_the_company(crm: EmbeddedCrm) -> None:
    await crm.add_record("lead", "Lead Durand", PHONE, "carol")
    await crm.add_record("company", "Durand SARL", PHONE, "bob")

    assert await crm.find_by_phone(PHONE) == Match(
        EntityRef(EntityType.COMPANY, 1), "bob", "Durand SARL"
    )


async def test_number_on_new_lead_only_finds_the_lead(crm: EmbeddedCrm) -> None:
    await crm.add_record("lead", "Lead Durand", PHONE, None)

    assert await crm.find_by_phone(PHONE) == Match(
        EntityRef(EntityType.LEAD, 1), None, "Lead Durand"
    )


async def test_number_on_two_contacts_finds_the_oldest(crm: EmbeddedCrm) -> None:
    await crm.add_record("contact", "Other", "+33699999999", "carol")
    await crm.add_record("contact", "First", PHONE, "alice")
    await crm.add_record("contact", "Second", PHONE, "bob")

    match = await crm.find_by_phone(PHONE)

    assert match == Match(EntityRef(EntityType.CONTACT, 2), "alice", "First")


async def test_converted_lead_is_not_matched_but_its_contact_is(
    crm: EmbeddedCrm, new_client
) -> None:
    created = await crm.create_records(new_client(PHONE, "1700000000.1", mode=CrmMode.SIMPLE))

    match = await crm.find_by_phone(PHONE)

    assert match is not None and match.entity == created.contact
