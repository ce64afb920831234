"""Bitrix24's own call card and the call's finish, with the whole daemon in-process, a real
Asterisk 22 placing the calls and the in-test Bitrix24 portal (tests/crm/bitrix24_portal.py):
the finish names who took a transfer (blind or attended); `crm.bitrix24.card` shows the card
to each employee whose phone rings (`ringing`) or to who answered (`answered`), hides it from
the others, and never (`none`); nothing at all for an excluded number."""
from __future__ import annotations

import pytest

from tests.test_app_bitrix24 import fastagi, finished, portal, portal_daemon  # noqa: F401 (fixtures)
from tests.fakes.polling import eventually
from tests.test_app_tracking import answered_call, transfer
from tests.daemon_harness import UNKNOWN

pytestmark = [pytest.mark.asterisk]

ALICE, BOB = 11, 12  # the portal users of employees alice (101) and bob (102)


@pytest.mark.parametrize("kind", ["blind", "attended"])
async def test_transferred_call_is_finished_for_who_took_the_transfer(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal, kind):  # noqa: F811
    async with portal_daemon(employees, fastagi.config(tmp_path, bitrix24=portal.webhook_url), crm):
        call = await answered_call(asterisk_ami, UNKNOWN)  # alice answers
        await eventually(lambda: portal.records["lead"] or None, timeout=10)
        await transfer(asterisk_ami, call, kind)  # ... and transfers it to bob, who answers
        await asterisk_ami.hangup_call(call.linkedid)
        [registered] = await eventually(finished(portal, call.linkedid), timeout=15)
    # the dialplan's hangup report came first; it waited for call tracking's, which names bob
    assert (registered.finished["USER_ID"], registered.finished["STATUS_CODE"]) == (BOB, "200")
    assert registered.registrations == 1
    [lead] = portal.records["lead"].values()
    assert str(lead["ASSIGNED_BY_ID"]) == str(BOB)  # R10 on the portal too
