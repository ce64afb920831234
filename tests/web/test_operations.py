"""/metrics in Prometheus text format, moving with real calls; /healthz with each link's state."""
from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import CLIENT, UNKNOWN, eventually, logged_calls, running_daemon
from tests.web.harness import base_url, new_session, web_config

PARIS_AS_DIALLED = "0184880000"


async def scrape(daemon) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, parsed by Prometheus' own text parser."""
    async with new_session() as http:
        async with http.get(f"{base_url(daemon)}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.asterisk
async def test_metrics_parse_and_count_real_calls(tmp_path, mode, crm, asterisk_ami, employees):
    await crm.add_record("contact", "Client SA", CLIENT, "alice")
    async with running_daemon(employees, web_config(tmp_path, **mode.links()), crm) as daemon:
        before = await scrape(daemon)
        for caller in (UNKNOWN, CLIENT):
            call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, caller)
            await asyncio.wait_for(call.response, 5)
            await asterisk_ami.hangup_call(call.linkedid)
            await eventually(lambda linkedid=call.linkedid: logged_calls(crm, linkedid))
        after = await eventually(lambda: _counted(daemon, before))
    answered = ("agi_daemon_calls_total", {"direction": "incoming", "disposition": "answered"})
    assert value(after, answered[0], **answered[1]) - value(before, answered[0], **answered[1]) == 2
    assert value(after, "agi_daemon_routing_decisions_total", status="ok") - \
        value(before, "agi_daemon_routing_decisions_total", status="ok") == 2
    assert value(after, "agi_daemon_routing_seconds_count") - value(before, "agi_daemon_routing_seconds_count") == 2
    assert value(after, "agi_daemon_crm_lookup_seconds_count") >= 2
    assert value(after, f"agi_daemon_{mode.name}_connected") == 1  # the link call tracking uses
    assert (f"agi_daemon_{mode.name}_reconnects_total", ()) in after and ("agi_daemon_crm_work_pending", ()) in after
    assert ("agi_daemon_crm_lookups_past_deadline_total", ()) in after


async def _counted(daemon, before):
    samples = await scrape(daemon)
    key = ("agi_daemon_calls_total", (("direction", "incoming"), ("disposition", "answered")))
    return samples if samples.get(key, 0) - before.get(key, 0) >= 2 else None


async def test_healthz_reports_each_link_and_503_once_fastagi_stops_serving(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        async with new_session() as http:
            async with http.get(f"{base_url(daemon)}/healthz") as response:
                body = await response.json()
                assert response.status == 200
            assert body["status"] == "ok" and body["fastagi"] == "serving"
            assert body["ami"] == "disconnected" and body["ami_last_error"]  # AMI points at a closed port
            await daemon.parts.fastagi.close()
            async with http.get(f"{base_url(daemon)}/healthz") as response:
                assert response.status == 503
                assert (await response.json())["fastagi"] == "stopped"


async def test_healthz_in_ari_mode_reports_the_ari_link(tmp_path, crm):
    config = web_config(tmp_path, ari=(f"http://127.0.0.1:{closed_port()}", "agi-daemon", "unused"))
    async with running_daemon(None, config, crm, wait_for_ami=False) as daemon:
        async with new_session() as http:
            body = await eventually(lambda: _health_with_error(http, daemon, "ari_last_error"))
    assert body["ari"] == "disconnected" and "ami" not in body


async def _health_with_error(http, daemon, key):
    async with http.get(f"{base_url(daemon)}/healthz") as response:
        body = await response.json()
    return body if body.get(key) else None


async def test_metrics_time_a_remote_crms_deliveries_by_outcome(tmp_path, crm_database_url):
    """With crm.adapter bitrix24, /metrics shows how long the portal takes to take each outbox
    command: delivered, or unavailable (retried) while it answers 503."""
    from agi_daemon.crm.embedded import EmbeddedCrm
    from tests.crm.crm_holds import PortalHolds, running_portal
    from tests.faults.outbox_harness import hang_up, route

    async with running_portal() as portal, EmbeddedCrm(crm_database_url) as store:
        config = web_config(tmp_path, bitrix24=portal.webhook_url)
        async with running_daemon(None, config, PortalHolds(portal, store=store), wait_for_ami=False) as daemon:
            status, _ = await route(daemon.agi_port, "m.1", UNKNOWN)
            delivered = await eventually(lambda: _delivery_count(daemon, "delivered", 1))
            portal.fail_next(2, status=503, code="QUERY_LIMIT_EXCEEDED")  # what comes next: the call's finish
            await hang_up(daemon.agi_port, "m.1", UNKNOWN, status)
            unavailable = await eventually(lambda: _delivery_count(daemon, "unavailable", 1), timeout=10)
            after = await eventually(lambda: _delivery_count(daemon, "delivered", delivered + 1), timeout=10)
    assert status == "ok" and unavailable is not None and after is not None
    [call] = [call for call in portal.calls.values() if call.params.get("EXTERNAL_CALL_ID") == "m.1"]
    assert call.finished  # retried until the portal took it


async def _delivery_count(daemon, outcome: str, at_least: float) -> float | None:
    count = value(await scrape(daemon), "agi_daemon_crm_delivery_seconds_count", outcome=outcome)
    return count if count >= at_least else None


async def test_healthz_tells_why_a_link_is_down_only_to_the_metrics_peers(tmp_path, crm):
    """The last error names the PBX's host and port: a client that is no metrics peer sees the
    link's state, not why it is down."""
    async with running_daemon(None, web_config(tmp_path, metrics_peers='["10.9.9.9"]'), crm,
                              wait_for_ami=False) as daemon:
        assert await eventually(lambda: daemon.parts.event_source.last_error)  # AMI points at a closed port
        async with new_session() as http:
            async with http.get(f"{base_url(daemon)}/healthz") as response:
                body = await response.json()
    assert response.status == 200 and body["ami"] == "disconnected"
    assert "ami_last_error" not in body and "127.0.0.1" not in json.dumps(body)
