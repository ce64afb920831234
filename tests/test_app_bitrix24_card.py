"""Bitrix24's own call card and the call's finish, with the whole daemon in-process, a real
Asterisk 22 placing the calls and the in-test Bitrix24 portal (tests/crm/bitrix24_portal.py):
the finish names who took a transfer (blind or attended); `crm.bitrix24.card` shows the card
to each employee whose phone rings (`ringing`) or to who answered (`answered`), hides it from
the others, and never (`none`); nothing at all for an excluded number."""
# ruff: noqa: F811 (the `fastagi` fixture of tests/test_app_bitrix24.py, imported by name, is the tests' argument)
from __future__ import annotations

import asyncio

import pytest

from tests.daemon_harness import BLOCKED, UNKNOWN, rang
from tests.fakes.polling import eventually
from tests.test_app import LYON_AS_DIALLED
from tests.test_app_bitrix24 import PARIS_AS_DIALLED, calls_of, fastagi, finished, portal_daemon  # noqa: F401 (fixtures)
from tests.test_app_tracking import answered_call, transfer

pytestmark = [pytest.mark.asterisk]

ALICE, BOB = 11, 12  # the portal users of employees alice (101) and bob (102)


def with_card(config, card: str):
    """The test PBX's config with crm.bitrix24.card set."""
    text = config.read_text()
    assert "pipelines: {general: 0, b2b: 3}}" in text
    config.write_text(text.replace("pipelines: {general: 0, b2b: 3}}", f"pipelines: {{general: 0, b2b: 3}}, card: {card}}}"))
    return config


def cards(on, linkedid: str) -> list[tuple[str, int]]:
    """What the call's card did on the portal `on`, in order: ("show" | "hide", user)."""
    [registered] = calls_of(on, linkedid)
    return on.cards_of(registered.call_id)


@pytest.mark.parametrize("kind", ["blind", "attended"])
async def test_transferred_call_is_finished_for_who_took_the_transfer(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal, kind):
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
    # card: ringing (the default): alice's phone rang, then the call went to bob
    assert cards(portal, call.linkedid) == [("show", ALICE), ("show", BOB), ("hide", ALICE), ("hide", BOB)]


@pytest.mark.parametrize("card, expected", [
    ("ringing", [("show", ALICE), ("hide", ALICE), ("show", BOB), ("hide", BOB)]),
    ("answered", [("show", BOB), ("hide", BOB)]),
])
async def test_card_follows_the_phones_that_ring_and_who_answers(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal, card, expected):
    """alice (rung first) does not answer; after her ring_seconds bob's phone rings and he
    answers; the caller hangs up."""
    employees.set_global("EMPLOYEE_101", "noanswer")
    config = with_card(fastagi.config(tmp_path, bitrix24=portal.webhook_url), card)
    async with portal_daemon(employees, config, crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "102"), 10, since=since)
        await asyncio.wait_for(call.response, 5)  # bob answered
        if card == "ringing":  # shown to alice while her phone rang: before the call ends
            await eventually(lambda: ("show", ALICE) in cards(portal, call.linkedid) or None, timeout=10)
        await asterisk_ami.hangup_call(call.linkedid)
        [registered] = await eventually(finished(portal, call.linkedid), timeout=15)
    assert cards(portal, call.linkedid) == expected
    assert registered.finished["USER_ID"] == BOB and registered.shown_to == set()


async def test_card_none_shows_nothing_even_on_an_offer_line(tmp_path, fastagi, crm, asterisk_ami, employees,
                                                             portal):
    config = with_card(fastagi.config(tmp_path, bitrix24=portal.webhook_url), "none")
    async with portal_daemon(employees, config, crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(LYON_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        [registered] = await eventually(lambda: calls_of(portal, call.linkedid), timeout=10)
        await asterisk_ami.hangup_call(call.linkedid)
        await eventually(finished(portal, call.linkedid), timeout=15)
    assert (str(registered.params["CRM_CREATE"]), str(registered.params["SHOW"])) == ("0", "0")
    assert portal.cards == [] and not {"telephony.externalcall.show", "telephony.externalcall.hide"} & set(portal.methods)


async def test_excluded_caller_gets_no_card_and_no_request_at_all(tmp_path, fastagi, crm, asterisk_ami, employees,
                                                                  portal):
    async with portal_daemon(employees, fastagi.config(tmp_path, bitrix24=portal.webhook_url), crm) as daemon:
        before = portal.requests
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, BLOCKED)
        await asyncio.wait_for(call.response, 5)  # alice answered: rung, answered, then hung up
        await asterisk_ami.hangup_call(call.linkedid)
        # tracking saw the call end (its ring, answer and end published) and the CRM work of it is over
        await eventually(lambda: (daemon.tracking.calls_in_progress == 0 and daemon.pending.in_flight == 0) or None,
                         timeout=10)
        await daemon.parts.outbox.settle(5)
        assert portal.requests == before
    assert portal.calls == {} and portal.cards == []
