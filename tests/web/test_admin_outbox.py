"""The admin page's outbox section and /metrics: CRM writes waiting, dead letters, and the
retry button that delivers a dead letter again once the cause is fixed."""
from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from agi_daemon.core.commands import CallLedger, ChangeResponsible, CreatedRecords, LedgerUpdate
from agi_daemon.core.model import EntityRef, EntityType
from agi_daemon.crm import outbox_store
from tests.daemon_harness import UNKNOWN, running_daemon
from tests.fakes.polling import eventually
from tests.web.harness import base_url, http_login, new_session, set_passwords, web_config


async def dead_letters(http, daemon) -> str:
    async with http.get(f"{base_url(daemon)}/admin") as response:
        assert response.status == 200
        return await response.text()


async def outbox_gauges(daemon) -> dict[str, float]:
    async with new_session() as http, http.get(f"{base_url(daemon)}/metrics") as response:
        text = await response.text()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("agi_daemon_outbox_")}


async def test_dead_letter_shows_on_the_admin_page_and_in_metrics_and_retry_delivers_it(tmp_path, crm):
    # a transfer's new responsible for a lead that does not exist (yet): the CRM rejects it
    lead = EntityRef(EntityType.LEAD, 1)

    def leave(conn):
        now = datetime.now(UTC)
        outbox_store.learn(conn, CallLedger("T1"), LedgerUpdate(created=CreatedRecords(lead)), now)
        outbox_store.add(conn, ChangeResponsible("T1", UNKNOWN, "bob", 1), now)

    await crm.transaction("test: an earlier run", leave, write=True)
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        assert await eventually(lambda: _dead(daemon), timeout=10)
        async with new_session() as carol:
            await http_login(carol, daemon, "carol")
            page = await dead_letters(carol, daemon)
            assert 'id="outbox-dead" class="bad">1<' in page and "change_responsible" in page and "T1" in page
            assert "not every one of lead:1 exists" in page
            gauges = await eventually(lambda: _gauges_show_dead(daemon), timeout=10)
            assert gauges["agi_daemon_outbox_dead_letters"] == 1

            await crm.add_record("lead", "Client", UNKNOWN, "alice")  # the cause fixed: lead 1 exists
            [dead] = await daemon.parts.outbox.listing()
            async with carol.get(f"{base_url(daemon)}/api/me") as me:
                token = (await me.json())["csrf"]
            async with carol.post(f"{base_url(daemon)}/admin/outbox/{dead['id']}/retry", data={"csrf": token},
                                  allow_redirects=False) as response:
                assert response.status == 303
            [moved] = await eventually(lambda: _responsible(crm, "bob"), timeout=5)
            page = await dead_letters(carol, daemon)
            assert 'id="outbox-dead" class="ok">0<' in page
    assert moved["id"] == 1


async def _dead(daemon) -> bool:
    return any(row["status"] == "dead" for row in await daemon.parts.outbox.listing())


async def _gauges_show_dead(daemon):
    gauges = await outbox_gauges(daemon)
    return gauges if gauges.get("agi_daemon_outbox_dead_letters") == 1 else None


async def _responsible(crm, employee):
    return [lead for lead in await crm.list_records("leads") if lead["responsible"] == employee]
