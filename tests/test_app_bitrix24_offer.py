"""A record created from the daemon's call window on an `offer` line, with `crm.adapter:
bitrix24`: the whole daemon in-process (web server included), a real Asterisk 22 placing the
call, the in-test Bitrix24 portal. The call was registered on the portal before any record
existed (CRM_CREATE=0); once finished, its CRM activity is bound to the record the agent
created (R12: the call logged on the record), once."""
# ruff: noqa: F811 (the `fastagi` fixture of tests/test_app_bitrix24.py, imported by name, is the tests' argument)
from __future__ import annotations

import pytest

from tests.crm.crm_holds import PortalHolds
from tests.daemon_harness import UNKNOWN, rang
from tests.fakes.polling import eventually
from tests.test_app import LYON_AS_DIALLED
from tests.test_app_bitrix24 import calls_of, fastagi, finished, portal_daemon  # noqa: F401 (fixtures)
from tests.web.harness import http_login, new_session, set_passwords, web_config
from tests.web.test_offer_api import create

pytestmark = [pytest.mark.asterisk]


@pytest.mark.parametrize("kind", ["lead", "contact"])
async def test_record_created_from_the_call_window_during_an_offer_call_has_the_portal_call_logged_on_it(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal, kind):
    config = web_config(tmp_path, ami=employees.daemon_ami, bitrix24=portal.webhook_url)
    async with portal_daemon(employees, config, crm) as daemon:
        await set_passwords(crm)
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(LYON_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        [offered] = await eventually(lambda: calls_of(portal, call.linkedid), timeout=10)  # the offer's registration
        async with new_session() as alice:
            login = await http_login(alice, daemon, "alice")
            assert login.status == 303, login.status  # logged in: on to the call window
            status, body = await eventually(lambda: _created(alice, daemon, call.linkedid, kind), timeout=10)
        assert status == 201, body
        await eventually(lambda: portal.records[kind] or None, timeout=10)
        await asterisk_ami.hangup_call(call.linkedid)
        await eventually(finished(portal, call.linkedid), timeout=15)
        [record] = portal.records[kind].values()
        await eventually(lambda: portal.bindings_of(offered.call_id) or None, timeout=10)
    assert str(offered.params["CRM_CREATE"]) == "0" and offered.params["CRM_ENTITY_ID"] is None
    assert calls_of(portal, call.linkedid) == [offered] and offered.registrations == 1  # one portal call
    assert portal.bindings_of(offered.call_id) == [(kind, int(record["ID"]))]  # bound once, to the record
    assert record["ORIGIN_ID"] == f"{call.linkedid}/records"
    [logged] = [c for c in await PortalHolds(portal).list_records("calls") if c["linkedid"] == call.linkedid]
    assert logged["entity"] == f"{kind}:{record['ID']}"  # the contract's view: the call is logged on it


async def _created(http, daemon, linkedid: str, kind: str):
    """The call window's "create" once the call is on alice's window (None before)."""
    status, body = await create(http, daemon, linkedid, kind)
    return None if status == 404 else (status, body)
