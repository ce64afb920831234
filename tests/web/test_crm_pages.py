"""The CRM pages of the embedded CRM: lists with filters, a record's page with its calls, edit
name and responsible, convert a lead; English or French from Accept-Language."""
from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import pytest

from agi_daemon.core.model import CallRecord, Direction, Disposition, EntityRef, EntityType
from tests.daemon_harness import CLIENT, LYON, PARIS, UNKNOWN, running_daemon
from tests.web.harness import base_url, chromium, http_login, logged_in, new_session, screenshot, set_passwords, web_config
from tests.web.test_security import _call


async def _seed(crm):
    lead = await crm.add_record("lead", "Martine Dupuis", UNKNOWN, "alice", source="CALL")
    contact = await crm.add_record("contact", "Client SA", CLIENT, "bob")
    start = datetime.now(UTC) - timedelta(hours=1)
    for index, (number, entity, employee, line) in enumerate([
        (UNKNOWN, EntityRef(EntityType.LEAD, lead["id"]), "alice", PARIS),
        (CLIENT, EntityRef(EntityType.CONTACT, contact["id"]), "bob", LYON),
        (UNKNOWN, EntityRef(EntityType.LEAD, lead["id"]), "alice", LYON),
    ]):
        at = start + timedelta(minutes=index)
        await crm.log_call(CallRecord(f"crm-page-{index}", Direction.INCOMING, line, number, Disposition.ANSWERED,
                                      at, at + timedelta(seconds=60), at + timedelta(seconds=4), employee, (employee,),
                                      4, 56, entity=entity))
    return lead, contact


async def test_record_lists_filter_by_phone_responsible_and_date(tmp_path, crm):
    await _seed(crm)
    await crm.add_record("contact", "Autre Client", "+33611000000", "alice")
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        url = base_url(daemon)
        async with new_session() as carol:
            await http_login(carol, daemon, "carol")

            async def names(query: str) -> list[str]:
                async with carol.get(f"{url}/api/records/contacts?{query}") as response:
                    return [r["name"] for r in await response.json()]

            assert sorted(await names("")) == ["Autre Client", "Client SA"]
            assert await names("phone=06 11 22 33 44") == ["Client SA"]
            assert await names("responsible=alice") == ["Autre Client"]
            tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
            assert await names(f"from={tomorrow}") == []
            async with carol.get(f"{url}/api/calls?line=04 72 00 00 00") as response:
                assert sorted(c["linkedid"] for c in await response.json()) == ["crm-page-1", "crm-page-2"]
            async with carol.get(f"{url}/api/calls?phone={UNKNOWN}&employee=alice") as response:
                assert sorted(c["linkedid"] for c in await response.json()) == ["crm-page-0", "crm-page-2"]


@pytest.mark.browser
async def test_agent_edits_a_lead_and_converts_it_from_its_page(tmp_path, crm):
    lead, _ = await _seed(crm)
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with chromium() as browser:
            page = await logged_in(browser, daemon, "alice")
            await page.goto(f"{base_url(daemon)}/crm/lead/{lead['id']}")
            calls = await page.inner_text("table.calls")
            assert calls.count("lead:") == 2  # its two calls, both alice's
            await page.fill("form.edit input[name=name]", "Martine Dupuis-Leroy")
            await page.select_option("form.edit select[name=responsible]", "bob")
            await page.click("form.edit button[type=submit]")
            await page.wait_for_selector("p.saved")
            await screenshot(page, "crm-lead")
            await page.click("form.convert button[type=submit]")
            await page.wait_for_url("**/crm/contact/*")
            heading = await page.inner_text("h1")
            await page.goto(f"{base_url(daemon)}/crm/calls")
            await screenshot(page, "crm-calls")
    [after] = await crm.list_records("leads")
    assert after["name"] == "Martine Dupuis-Leroy" and after["responsible"] == "bob"
    assert after["status"] == "CONVERTED"
    contacts = {c["name"]: c for c in await crm.list_records("contacts")}
    converted = contacts["Martine Dupuis-Leroy"]
    assert converted["phones"] == [UNKNOWN] and converted["responsible"] == "bob"
    assert heading.startswith("Martine Dupuis-Leroy")
    [deal] = await crm.list_records("deals")
    assert deal["contact"] == f"contact:{converted['id']}" and deal["pipeline"] == "general"


async def test_pages_speak_french_to_a_french_browser(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with new_session() as http:
            async with http.get(f"{base_url(daemon)}/login", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}) as fr:
                assert "Mot de passe" in await fr.text()
            async with http.get(f"{base_url(daemon)}/login", headers={"Accept-Language": "de-DE,en;q=0.5"}) as en:
                assert "Password" in await en.text()
            await http_login(http, daemon, "alice")
            async with http.get(f"{base_url(daemon)}/crm/calls", headers={"Accept-Language": "fr"}) as page:
                text = html.unescape(await page.text())
            assert "Appels" in text and "Fenêtre d'appels" in text and 'lang="fr"' in text


async def test_call_times_are_shown_in_the_browsers_time_zone(tmp_path, crm):
    """A call at 23:30 UTC on 14 March is 00:30 on the 15th for an agent in Paris; the page
    said 2025-03-14 23:30, a day and an hour off, with nothing saying it was UTC."""
    at = datetime(2025, 3, 14, 23, 30, 5, tzinfo=UTC)
    await crm.log_call(_call("late-call", "alice", start=at))
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with chromium() as browser:
            page = await logged_in(browser, daemon, "alice", timezone="Europe/Paris")
            await page.goto(f"{base_url(daemon)}/crm/calls")
            shown = await page.inner_text("table.calls tbody tr:first-child td:first-child")
        async with new_session() as http:  # without JavaScript: the server's UTC, said so
            await http_login(http, daemon, "alice")
            async with http.get(f"{base_url(daemon)}/crm/calls") as answer:
                served = await answer.text()
    assert shown == "2025-03-15 00:30:05"
    assert "2025-03-14 23:30:05 UTC" in served
