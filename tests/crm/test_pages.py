"""The CRM pages' reads and writes (crm/pages.py) on the real store."""
from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from agi_daemon.core.commands import CallReport, LogCall, RecordOffer
from agi_daemon.core.crm_queries import CallFilter
from agi_daemon.core.model import Direction, EntityRef, EntityType, Offer
from agi_daemon.core.ports import CrmRejected
from agi_daemon.crm.embedded import EmbeddedCrm
from agi_daemon.crm.outbox import Delivery, Outbox
from agi_daemon.crm.pages import CrmPages
from tests.crm.test_outbox import AT, call_of, delivering

PHONE = "+33611000001"


async def test_an_offer_taken_on_a_daemon_naming_its_pbx_is_taken_and_its_call_logged_on_the_records(crm):
    """A daemon with a pbx_id stores its calls and offers as "pbx:linkedid": the call window's
    "create" must find them under that name."""
    async with delivering(Outbox(crm, Delivery(crm), pbx="pbx-a")) as outbox:
        await outbox.submit(RecordOffer(Offer("L1", Direction.INCOMING, "+33184880000", PHONE, ("alice",), AT)))
        await outbox.submit(LogCall(call_of("L1", PHONE), CallReport.HANGUP, PHONE))  # logged before any record
    lead = await crm.add_record("lead", "Dupont", PHONE, "alice")

    await CrmPages(crm, pbx="pbx-a").take_offer("L1", EntityRef(EntityType.LEAD, lead["id"]))

    [offer] = await crm.list_records("offers")
    [call] = await crm.list_records("calls")
    assert (offer["status"], call["entity"]) == ("taken", f"lead:{lead['id']}")


@pytest.mark.databases("sqlite", "postgresql")
async def test_the_calls_an_employee_was_only_rung_for_are_theirs_whatever_letters_their_id_has(crm):
    rung = replace(call_of("L2", PHONE), answered_by=None, employees=("josé", "bob"))
    await crm.log_call(rung)

    found = await CrmPages(crm).calls(CallFilter(employee="josé"))

    assert [call["linkedid"] for call in found] == ["L2"]
    assert await CrmPages(crm).calls(CallFilter(employee="jose")) == []


@pytest.mark.databases("postgresql")
async def test_a_lead_converted_on_two_daemons_at_once_makes_one_contact_and_one_deal(crm):
    """Several PBXs share one database: the same lead converted from two daemons together."""
    async with EmbeddedCrm(crm.url.render_as_string(hide_password=False)) as other:
        for attempt in range(CONVERSIONS):
            lead = await crm.add_record("lead", f"Dupont {attempt}", f"+336110001{attempt:02d}", "alice")
            done = await asyncio.gather(CrmPages(crm).convert_lead(lead["id"], "general"),
                                        CrmPages(other).convert_lead(lead["id"], "general"), return_exceptions=True)
            refused = [outcome for outcome in done if isinstance(outcome, CrmRejected)]
            assert len(refused) == 1 and "already converted" in str(refused[0]), done
    assert len(await crm.list_records("contacts")) == len(await crm.list_records("deals")) == CONVERSIONS


CONVERSIONS = 10

