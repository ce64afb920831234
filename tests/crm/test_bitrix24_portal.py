"""The in-test portal is as strict as the tests rely on it to be: it notices a request the
Bitrix24 documentation does not allow, and enforces the leaky bucket."""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agi_daemon.core.crm_errors import RemoteCrmRejected, RemoteCrmUnavailable
from agi_daemon.crm.bitrix24.auth import WebhookAuth
from agi_daemon.crm.bitrix24.bucket import LeakyBucket
from agi_daemon.crm.bitrix24.client import Bitrix24Client, Command
from agi_daemon.crm.bitrix24.query import build_query
from tests.crm.bitrix24_portal import Bitrix24Portal, php_parse


@pytest.fixture
async def portal():
    portal = await Bitrix24Portal(webhook_denied=frozenset({"telephony.externalcall.show"})).start()
    yield portal
    await portal.stop()


@pytest.fixture
async def client(portal):
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50))
    await client.open()
    yield client
    await client.close()


REGISTER = {"USER_ID": 1, "PHONE_NUMBER": "+33612000001", "TYPE": 2, "CRM_CREATE": 0}


@pytest.mark.parametrize(("method", "params", "violation"), [
    ("crm.lead.add", {"fields": {"TITLE": "x", "PHONE": "+33612000001"}}, "PHONE must be a list"),
    ("crm.lead.add", {"fields": {"TITLE": "x", "PHONE": [{"VALUE": "+33612000001", "VALUE_TYPE": "OFFICE"}]}},
     "VALUE_TYPE must be one of"),
    ("crm.lead.add", {"fields": {"TITLE": "x", "ASIGNED_BY_ID": 1}}, "unknown fields ['ASIGNED_BY_ID']"),
    ("crm.deal.add", {"fields": {"TITLE": "x"}}, "CATEGORY_ID is required"),
    ("crm.lead.update", {"fields": {"ASSIGNED_BY_ID": 1}}, "id is required"),
    ("telephony.externalcall.register", {"PHONE_NUMBER": "+33612000001", "TYPE": 2}, "USER_ID or USER_PHONE_INNER"),
    ("telephony.externalcall.register", {**REGISTER, "TYPE": 5}, "TYPE must be 1 to 4"),
    ("telephony.externalcall.register", {**REGISTER, "SHOW": "yes"}, "SHOW must be 0 or 1"),
    ("telephony.externalcall.register", {**REGISTER, "CRM_ENTITY_TYPE": "LEAD"}, "CRM_ENTITY_ID is required"),
    ("telephony.externalCall.searchCrmEntities", {}, "PHONE_NUMBER is required"),
    ("crm.duplicate.findbycomm", {"type": "PHONE", "values": "+33612000001"}, "values must be a list"),
    ("user.get", {"FILTER": {"PHONE": "101"}}, "unknown filter fields"),
], ids=["phone-not-multifield", "phone-value-type", "misspelt-field", "deal-without-pipeline", "update-without-id",
        "register-without-user", "register-type", "register-show", "register-entity-without-id", "search-without-phone",
        "findbycomm-values", "user-filter"])
async def test_request_outside_the_documentation_is_noted_and_refused(portal, client, method, params, violation):
    with pytest.raises(RemoteCrmRejected, match="INVALID_REQUEST"):
        await client.call(method, params)
    assert len(portal.violations) == 1 and violation in portal.violations[0]


async def test_finish_needs_a_duration_and_a_known_call(portal, client):
    call = await client.call("telephony.externalcall.register", REGISTER)
    with pytest.raises(RemoteCrmRejected):
        await client.call("telephony.externalcall.finish", {"CALL_ID": call["CALL_ID"], "USER_ID": 1})
    with pytest.raises(RemoteCrmRejected, match="ERROR_NOT_FOUND"):
        await client.call("telephony.externalcall.finish", {"CALL_ID": "nope", "USER_ID": 1, "DURATION": 3})
    assert portal.violations == ["telephony.externalcall.finish: telephony.externalcall.finish DURATION is required"]


async def test_unknown_method_is_not_found(portal, client):
    with pytest.raises(RemoteCrmRejected, match="ERROR_METHOD_NOT_FOUND"):
        await client.call("crm.lead.create", {"fields": {"TITLE": "x"}})
    assert portal.violations == ["unknown method crm.lead.create"]


async def test_batch_of_more_than_50_commands_is_refused(portal, client):
    cmd = {f"c{index}": "crm.settings.mode.get?" for index in range(51)}
    with pytest.raises(RemoteCrmRejected, match="ERROR_BATCH_LENGTH_EXCEEDED"):
        await client.call("batch", {"halt": 0, "cmd": cmd})


async def test_halted_batch_runs_nothing_after_the_first_error(portal, client):
    done = await client.batch([Command("bad", "crm.lead.update", {"id": 5, "fields": {"TITLE": "x"}}),
                               Command("next", "crm.lead.add", {"fields": {"TITLE": "y"}})], halt=True)
    assert isinstance(done.errors["bad"], RemoteCrmRejected)
    assert isinstance(done.errors["next"], RemoteCrmUnavailable)  # not run: worth sending again
    assert portal.records["lead"] == {}


async def test_webhook_calling_an_application_only_method_gets_wrong_auth_type(portal, client):
    call = await client.call("telephony.externalcall.register", REGISTER)
    with pytest.raises(RemoteCrmRejected, match="WRONG_AUTH_TYPE") as raised:
        await client.call("telephony.externalcall.show", {"CALL_ID": call["CALL_ID"], "USER_ID": [1]})
    assert raised.value.code == "WRONG_AUTH_TYPE"


async def test_portal_answers_query_limit_exceeded_to_a_client_without_a_bucket(portal):
    reckless = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(1000, 1000))
    await reckless.open()
    try:
        answers = await asyncio.gather(*(reckless.call("crm.settings.mode.get") for _ in range(60)),
                                       return_exceptions=True)
    finally:
        await reckless.close()
    refused = [answer for answer in answers if isinstance(answer, RemoteCrmUnavailable)]
    assert len(refused) == portal.limit_hits == 10
    assert all(error.code == "QUERY_LIMIT_EXCEEDED" for error in refused)


values = st.recursive(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8) | st.integers(0, 10**6).map(str),
    lambda children: st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True), children,
                                     min_size=1, max_size=3)
    | st.lists(children, min_size=1, max_size=3),
    max_leaves=10)


@given(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True), values, min_size=1, max_size=4))
def test_batch_query_of_the_client_reads_back_as_sent(params):
    assert php_parse(build_query(params)) == params


@pytest.mark.parametrize(("method", "user_id", "finish_first", "violation"), [
    ("telephony.externalcall.show", [1, 404], False, "no user [404]"),
    ("telephony.externalcall.hide", 404, False, "no user [404]"),
    ("telephony.externalcall.show", "alice", False, "USER_ID must be an integer"),
    ("telephony.externalcall.show", [1], True, "is already finished"),
    ("telephony.externalcall.hide", [1], True, "is already finished"),
], ids=["show-unknown-user", "hide-unknown-user", "show-user-not-an-id", "show-finished-call", "hide-finished-call"])
async def test_call_card_needs_an_open_registered_call_and_existing_users(method, user_id, finish_first, violation):
    portal = await Bitrix24Portal().start()  # a portal that lets the webhook show cards
    try:
        client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50))
        await client.open()
        call = await client.call("telephony.externalcall.register", {**REGISTER, "SHOW": 0})
        if finish_first:
            await client.call("telephony.externalcall.finish", {"CALL_ID": call["CALL_ID"], "USER_ID": 1,
                                                               "DURATION": 3})
        with pytest.raises(RemoteCrmRejected, match="INVALID_REQUEST"):
            await client.call(method, {"CALL_ID": call["CALL_ID"], "USER_ID": user_id})
        with pytest.raises(RemoteCrmRejected, match="ERROR_NOT_FOUND"):
            await client.call(method, {"CALL_ID": "externalCall.nope", "USER_ID": [1]})
        await client.close()
    finally:
        await portal.stop()
    assert len(portal.violations) == 1 and violation in portal.violations[0]
    assert portal.cards == []  # nothing shown to anyone


async def test_call_card_shown_and_hidden_is_recorded_per_user():
    portal = await Bitrix24Portal().start()
    portal.add_user(11, "Alice Martin", inner_phone="101")
    try:
        client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50))
        await client.open()
        call = await client.call("telephony.externalcall.register", {**REGISTER, "SHOW": 1})  # shown to user 1
        await client.call("telephony.externalcall.show", {"CALL_ID": call["CALL_ID"], "USER_ID": [11]})
        await client.call("telephony.externalcall.hide", {"CALL_ID": call["CALL_ID"], "USER_ID": 1})
        await client.close()
    finally:
        await portal.stop()
    assert portal.cards_of(call["CALL_ID"]) == [("show", 1), ("show", 11), ("hide", 1)]
    assert portal.calls[call["CALL_ID"]].shown_to == {11} and portal.violations == []


@pytest.mark.parametrize(("binding", "violation"), [
    ({"activityId": 99, "entityTypeId": 1, "entityId": 1}, "activity 99 not found"),
    ({"activityId": 1, "entityTypeId": 5, "entityId": 1}, "entityTypeId 5 is not"),
    ({"activityId": 1, "entityTypeId": 3, "entityId": 1}, "contact 1 not found"),
    ({"activityId": 1, "entityTypeId": 1}, "entityId is required"),
], ids=["unknown-activity", "unknown-type", "missing-record", "no-entity"])
async def test_activity_binding_outside_the_documentation_is_noted_and_refused(portal, client, binding, violation):
    portal.add_record("lead", {"TITLE": "x"})
    registered = await client.call("telephony.externalcall.register", REGISTER)
    await client.call("telephony.externalcall.finish", {"CALL_ID": registered["CALL_ID"], "USER_ID": 1, "DURATION": 3})
    with pytest.raises(RemoteCrmRejected, match="INVALID_REQUEST"):
        await client.call("crm.activity.binding.add", binding)
    assert len(portal.violations) == 1 and violation in portal.violations[0]


async def test_finish_answers_the_call_activity_that_binding_add_and_list_work_on(portal, client):
    lead = portal.add_record("lead", {"TITLE": "x"})
    registered = await client.call("telephony.externalcall.register", REGISTER)
    finished = await client.call("telephony.externalcall.finish",
                                 {"CALL_ID": registered["CALL_ID"], "USER_ID": 1, "DURATION": 3})
    activity = finished["CRM_ACTIVITY_ID"]
    assert await client.call("crm.activity.binding.list", {"activityId": activity}) == []
    assert await client.call("crm.activity.binding.add", {"activityId": activity, "entityTypeId": 1,
                                                          "entityId": lead}) is True
    assert await client.call("crm.activity.binding.list", {"activityId": activity}) == [
        {"activityId": activity, "entityTypeId": 1, "entityId": lead}]
    assert portal.bindings_of(registered["CALL_ID"]) == [("lead", lead)] and portal.violations == []
