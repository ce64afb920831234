"""The agents' call window in headless Chromium, with real calls through the Asterisk sandbox:
a card within 1 s of the ring, a lead created from an `offer` line's card (R3, R5, R9, R12),
a blind transfer moving the card to the target agent."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.asterisk.ami_client import blind_transfer
from tests.daemon_harness import BLOCKED, UNKNOWN, eventually, logged_calls, rang, running_daemon
from tests.web.test_offer_api import create
from tests.web.test_security import _call
from tests.web.harness import (
    base_url, chromium, http_login, logged_in, new_session, screenshot, set_passwords, web_config,
)

pytestmark = [pytest.mark.asterisk, pytest.mark.browser]

LYON_AS_DIALLED = "0472000000"  # the `offer` line (source SUPPORT_CALL)
CARD_SECONDS = 1.0


def card(linkedid: str) -> str:
    return f'.card[data-linkedid="{linkedid}"]'


@contextlib.asynccontextmanager
async def alice_rung_on_the_offer_line(tmp_path, crm, asterisk_ami, employees):
    """The daemon, alice's call window in Chromium, and a call from a new number on the `offer`
    line ringing her phone: (daemon, page, call)."""
    async with running_daemon(employees, web_config(tmp_path, ami=employees.daemon_ami), crm) as daemon:
        await set_passwords(crm)
        async with chromium() as browser:
            page = await logged_in(browser, daemon, "alice")
            since = asterisk_ami.mark()
            call = await asterisk_ami.originate_incoming(LYON_AS_DIALLED, UNKNOWN)
            await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
            yield daemon, page, call


async def test_offer_line_call_shows_a_card_and_the_agent_creates_the_lead_from_it(tmp_path, crm, asterisk_ami, employees):
    async with alice_rung_on_the_offer_line(tmp_path, crm, asterisk_ami, employees) as (_, page, call):
        # the card is there within 1 s of alice's phone ringing, pushed over the WebSocket
        shown = await page.wait_for_selector(card(call.linkedid), timeout=CARD_SECONDS * 1000)
        assert "06 99 88 77 66" in await shown.inner_text()
        await page.wait_for_selector(f'{card(call.linkedid)} form.offer button[value="lead"]', timeout=5000)
        await screenshot(page, "call-window")
        await page.fill(f'{card(call.linkedid)} input[name="name"]', "Martine Dupuis")
        await page.click(f'{card(call.linkedid)} button[value="lead"]')
        # the card now names the new lead and its responsible, and offers nothing more
        link = await page.wait_for_selector(f'{card(call.linkedid)} .entity a', timeout=5000)
        assert await link.inner_text() == "Martine Dupuis"
        assert await page.query_selector(f"{card(call.linkedid)} form.offer") is None
        [lead] = await crm.list_records("leads")
        await asterisk_ami.hangup_call(call.linkedid)
        await page.wait_for_selector(card(call.linkedid), state="detached", timeout=5000)
        [logged] = await eventually(lambda: logged_calls(crm, call.linkedid))
    assert lead["name"] == "Martine Dupuis" and lead["phones"] == [UNKNOWN]
    assert lead["source"] == "SUPPORT_CALL"  # the line's source (R5)
    assert lead["responsible"] == "alice"  # the agent who created it (R9)
    assert lead["created_by_call"] == call.linkedid
    assert logged["entity"] == f"lead:{lead['id']}"  # the call is logged on it (R12)
    [offer] = await crm.list_records("offers")
    assert offer["status"] == "taken"


async def test_a_caller_who_hung_up_while_it_rang_is_still_on_the_card_to_create_the_lead(
        tmp_path, crm, asterisk_ami, employees):
    """The caller gave up before anyone answered: the very lead an `offer` line is for. The card
    stays, "Ended", with its buttons; the lead made from it has the call logged on it; the
    agent then closes the card."""
    for extension in ("101", "102"):
        employees.set_global(f"EMPLOYEE_{extension}", "noanswer")
    async with alice_rung_on_the_offer_line(tmp_path, crm, asterisk_ami, employees) as (_, page, call):
        await page.wait_for_selector(f'{card(call.linkedid)} form.offer button[value="lead"]', timeout=5000)
        await asterisk_ami.hangup_call(call.linkedid)
        await page.wait_for_selector(f'{card(call.linkedid)}[data-state="ended"]', timeout=5000)
        await eventually(lambda: logged_calls(crm, call.linkedid))  # logged, on no record yet
        await page.fill(f'{card(call.linkedid)} input[name="name"]', "Martine Dupuis")
        await page.click(f'{card(call.linkedid)} button[value="lead"]')
        link = await page.wait_for_selector(f'{card(call.linkedid)} .entity a', timeout=5000)
        assert await link.inner_text() == "Martine Dupuis"
        await screenshot(page, "call-window-ended-offer")
        await page.click(f'{card(call.linkedid)} form.close button')
        await page.wait_for_selector(card(call.linkedid), state="detached", timeout=5000)
    [lead] = await crm.list_records("leads")
    [logged] = await logged_calls(crm, call.linkedid)
    assert (lead["name"], lead["responsible"], lead["phones"]) == ("Martine Dupuis", "alice", [UNKNOWN])
    assert logged["entity"] == f"lead:{lead['id']}" and logged["disposition"] == "missed"


async def test_blind_transfer_moves_the_card_to_the_target_agents_window(tmp_path, crm, asterisk_ami, employees):
    async with running_daemon(employees, web_config(tmp_path, ami=employees.daemon_ami), crm) as daemon:
        await set_passwords(crm)
        async with chromium() as browser:
            alice = await logged_in(browser, daemon, "alice")
            bob = await logged_in(browser, daemon, "bob")
            employees.set_global("EMPLOYEE_102", "noanswer")  # Lyon rings both at once: alice is the one who answers
            call = await asterisk_ami.originate_incoming(LYON_AS_DIALLED, UNKNOWN)
            await asyncio.wait_for(call.response, 5)
            await alice.wait_for_selector(f'{card(call.linkedid)}[data-state="answered"]', timeout=5000)
            assert await bob.query_selector(card(call.linkedid)) is None
            employees.set_global("EMPLOYEE_102", "answer")  # bob takes the transferred call
            await blind_transfer(asterisk_ami, call.linkedid, "101", "102")
            await bob.wait_for_selector(card(call.linkedid), timeout=CARD_SECONDS * 1000)
            await alice.wait_for_selector(card(call.linkedid), state="detached", timeout=CARD_SECONDS * 1000)
            await asterisk_ami.hangup_call(call.linkedid)
            # the caller is still new: the offer's card stays with who talked last, bob
            await bob.wait_for_selector(f'{card(call.linkedid)}[data-state="ended"] button[value="lead"]', timeout=5000)
            assert await alice.query_selector(card(call.linkedid)) is None


async def alices_card_of_a_call_from(number: str, tmp_path, crm, asterisk_ami, employees) -> dict:
    """The card alice's window gets (GET /api/calls/live) for a call from `number` on the
    `offer` line ringing her phone."""
    async with running_daemon(employees, web_config(tmp_path, ami=employees.daemon_ami), crm) as daemon:
        await set_passwords(crm)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            call = await asterisk_ami.originate_incoming(LYON_AS_DIALLED, number)
            await asyncio.wait_for(call.response, 5)

            async def shown():
                async with alice.get(f"{base_url(daemon)}/api/calls/live") as response:
                    return [c for c in await response.json() if c["linkedid"] == call.linkedid]

            [card_data] = await eventually(shown)
    return card_data


async def test_after_a_restart_mid_call_the_card_still_offers_to_create_the_lead(tmp_path, crm, asterisk_ami, employees):
    """The daemon restarted while alice talked to a new caller on the `offer` line: its routing,
    and the offer, were the earlier run's. The card the resync brings back still has its buttons."""
    config = web_config(tmp_path, ami=employees.daemon_ami)
    async with running_daemon(employees, config, crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(LYON_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        await eventually(lambda: crm.list_records("offers"))
    async with running_daemon(employees, config, crm) as daemon:
        await set_passwords(crm)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")

            async def offered():
                async with alice.get(f"{base_url(daemon)}/api/calls/live") as response:
                    return [c for c in await response.json() if c["linkedid"] == call.linkedid and c["offer"]]

            [shown] = await eventually(offered)
            status, body = await create(alice, daemon, call.linkedid, "lead", "Après Redémarrage")
    assert status == 201, body
    assert (shown["state"], shown["offer_kinds"]) == ("answered", ["lead", "contact"])  # still in progress


async def test_card_of_a_number_on_the_exception_list_shows_nothing_from_the_crm(tmp_path, crm, asterisk_ami, employees):
    await crm.add_record("contact", "Never Looked Up", BLOCKED, "bob")
    card_data = await alices_card_of_a_call_from(BLOCKED, tmp_path, crm, asterisk_ami, employees)
    assert card_data["entity"] is None and card_data["last_calls"] == []  # R7: no lookup at all
    assert card_data["offer"] is False and card_data["number_display"] == "01 40 00 00 00"


async def test_the_cards_last_calls_with_the_number_are_the_agents_own(tmp_path, crm, asterisk_ami, employees):
    """Agents see their own calls, on the card too: alice's card of a number bob talked to
    lists alice's earlier call with it, not bob's."""
    await crm.log_call(_call("earlier-with-alice", "alice"))
    await crm.log_call(_call("earlier-with-bob", "bob"))
    card_data = await alices_card_of_a_call_from(UNKNOWN, tmp_path, crm, asterisk_ami, employees)
    assert [c["linkedid"] for c in card_data["last_calls"]] == ["earlier-with-alice"]


async def test_agent_creates_the_contact_from_the_card_once_through_the_outbox(tmp_path, crm, asterisk_ami, employees):
    """The card's "create contact" is one outbox command (like "create lead"): delivered by the
    configured CRM, the call logged on the contact, and a second click finds the same contact."""
    from tests.crm.test_outbox import rows

    async with alice_rung_on_the_offer_line(tmp_path, crm, asterisk_ami, employees) as (daemon, page, call):
        await page.wait_for_selector(f'{card(call.linkedid)} form.offer button[value="contact"]', timeout=5000)
        await page.fill(f'{card(call.linkedid)} input[name="name"]', "Paul Lefebvre")
        await page.click(f'{card(call.linkedid)} button[value="contact"]')
        link = await page.wait_for_selector(f'{card(call.linkedid)} .entity a', timeout=5000)
        assert await link.inner_text() == "Paul Lefebvre"
        async with new_session() as again:  # the same agent clicks again, from a tab not yet redrawn
            await http_login(again, daemon, "alice")
            status, body = await create(again, daemon, call.linkedid, "contact", "Paul Lefebvre")
        await asterisk_ami.hangup_call(call.linkedid)
        [logged] = await eventually(lambda: logged_calls(crm, call.linkedid))
    [contact] = await crm.list_records("contacts")
    assert status == 409, body  # the offer is taken: nothing more to create
    assert await crm.list_records("leads") == []
    assert (contact["name"], contact["phones"], contact["source"], contact["responsible"]) == \
        ("Paul Lefebvre", [UNKNOWN], "SUPPORT_CALL", "alice")
    assert (await rows(crm))[f"{call.linkedid}/records"][0] == "delivered"  # one command of the outbox
    assert logged["entity"] == f"contact:{contact['id']}"  # the call is logged on it (R12)


async def test_a_cards_last_calls_show_in_the_agents_time_zone(tmp_path, crm):
    """The card of a ringing call (pushed over the live socket) lists the caller's last calls
    at the agent's local time: 23:30 UTC on 14 March is 00:30 on the 15th in Paris."""
    from datetime import UTC, datetime

    from agi_daemon.core.live_calls import Ringing
    from agi_daemon.core.model import Direction
    from tests.daemon_harness import PARIS, UNKNOWN
    from tests.web.harness import chromium, logged_in

    at = datetime(2025, 3, 14, 23, 30, tzinfo=UTC)
    await crm.log_call(_call("earlier-call", "alice", start=at))
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with chromium() as browser:
            window = await logged_in(browser, daemon, "alice", timezone="Europe/Paris")
            daemon.live.publish(Ringing("ringing-now", "alice", Direction.INCOMING, PARIS, UNKNOWN, datetime.now(UTC)))
            await window.wait_for_selector(".card .history li time")
            shown = await window.inner_text(".card .history li time")
    assert shown == "2025-03-15 00:30"


async def test_with_bitrix24_a_known_callers_card_names_the_record_without_a_dead_link(tmp_path, crm_database_url):
    """The record's page is the embedded CRM's: with Bitrix24 the card linked to /crm/contact/N,
    a 404, and showed an empty name (the portal's lookup gives none)."""
    from datetime import UTC, datetime

    from agi_daemon.core.live_calls import Ringing
    from agi_daemon.core.model import Direction
    from agi_daemon.crm.embedded import EmbeddedCrm
    from tests.crm.crm_holds import PortalHolds, running_portal
    from tests.daemon_harness import CLIENT, PARIS

    async with running_portal() as portal, EmbeddedCrm(crm_database_url) as store:
        known = portal.add_record("contact", {"NAME": "Client SA", "ASSIGNED_BY_ID": 11,
                                              "PHONE": [{"VALUE": CLIENT, "VALUE_TYPE": "WORK"}]})
        config = web_config(tmp_path, bitrix24=portal.webhook_url)
        async with running_daemon(None, config, PortalHolds(portal, store=store), wait_for_ami=False) as daemon:
            await set_passwords(store)
            async with new_session() as alice:
                await http_login(alice, daemon, "alice")
                async with alice.ws_connect(f"{base_url(daemon)}/ws") as window:
                    await window.receive_json(timeout=5)
                    daemon.live.publish(Ringing("known-call", "alice", Direction.INCOMING, PARIS, CLIENT,
                                                datetime.now(UTC)))
                    pushed = await window.receive_json(timeout=5)
    assert f"contact:{known}" in pushed["html"] and "/crm/contact/" not in pushed["html"]
