"""The CRM pages' reads and writes (crm/pages.py) on the real store."""
from __future__ import annotations

from agi_daemon.core.commands import CallReport, LogCall, RecordOffer
from agi_daemon.core.model import Direction, EntityRef, EntityType, Offer
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
