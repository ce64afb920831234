"""The Bitrix24 REST client against the in-test portal (tests/crm/bitrix24_portal.py)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from agi_daemon.core.crm_errors import RemoteCrmRejected, RemoteCrmUnavailable
from agi_daemon.core.ports import CrmRejected, CrmUnavailable
from agi_daemon.crm.bitrix24.auth import OAuthAuth, Tokens, WebhookAuth, write_tokens
from agi_daemon.crm.bitrix24.bucket import LeakyBucket
from agi_daemon.crm.bitrix24.client import Bitrix24Client, Command
from agi_daemon.crm.bitrix24.operations import Bitrix24Operations, EmployeeDirectory
from agi_daemon.crm.remote_answer import MAX_RETRY_AFTER_SECONDS, printable
from tests.crm.bitrix24_portal import Bitrix24Portal, ScaledTime

LEAD = {"fields": {"TITLE": "Call +33612000001", "SOURCE_ID": "CALL", "ORIGIN_ID": "k1",
                   "PHONE": [{"VALUE": "+33612000001", "VALUE_TYPE": "WORK"}]}}
# A proxy's error page in latin-1, sent as text/html with no charset: not valid UTF-8.
PROXY_PAGE = "<html><body><h1>502 Passerelle défaillante</h1>Réessayez à 10 h.</body></html>".encode("latin-1")


@pytest.fixture
async def portal():
    portal = await Bitrix24Portal().start()
    yield portal
    await portal.stop()


@pytest.fixture
async def client(portal):
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50), timeout_seconds=0.5)
    await client.open()
    yield client
    await client.close()


@pytest.fixture
def tokens_file(tmp_path: Path, portal) -> Path:
    file = tmp_path / "var" / "b24-tokens.json"
    write_tokens(file, Tokens(portal.access_token, portal.refresh_token))
    return file


def oauth_client(portal, tokens_file, **options) -> Bitrix24Client:
    """A client of the local application on `tokens_file`: the daemon's, or another process's
    (`agi-daemon simulate`) sharing the file; `options` go to OAuthAuth."""
    auth = OAuthAuth(portal.address, portal.client_id, portal.client_secret, tokens_file, token_url=portal.token_url,
                     **options)
    return Bitrix24Client(auth, LeakyBucket(2, 50), timeout_seconds=0.5)


async def refresh_through(client: Bitrix24Client, portal) -> None:
    """Open `client`, let the access token expire and make one call (it refreshes), close."""
    await client.open()
    try:
        portal.expire_token()
        assert await client.call("crm.settings.mode.get") == 1
    finally:
        await client.close()


@pytest.fixture
async def app_client(portal, tokens_file):
    client = oauth_client(portal, tokens_file)
    await client.open()
    yield client
    await client.close()


async def test_lead_added_through_the_webhook_is_kept_by_the_portal(portal, client):
    lead_id = await client.call("crm.lead.add", LEAD)
    assert portal.records["lead"][lead_id]["PHONE"] == [{"VALUE": "+33612000001", "VALUE_TYPE": "WORK"}]
    assert portal.violations == []


async def test_500_operations_never_make_the_portal_answer_query_limit_exceeded(portal):
    time = ScaledTime(20)  # the portal's 2/s, burst 50, twenty times faster: 225 portal-seconds in about 11 s
    portal.set_clock(time.clock)
    # The scaled clock turns 50 ms of this machine's scheduling into a second of the portal's (two
    # requests' worth of leak): the headroom the daemon keeps for a real network's jitter, doubled.
    bucket = LeakyBucket(2, 50, headroom=4, clock=time.clock, sleep=time.sleep)
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), bucket)
    await client.open()
    try:
        results = await asyncio.gather(*(client.call("crm.settings.mode.get") for _ in range(500)))
    finally:
        await client.close()
    assert results == [1] * 500
    assert portal.requests == 500
    assert portal.limit_hits == 0
    assert client.limit_hits == 0


async def test_batch_of_120_commands_goes_as_50_50_20_with_each_call_bound_to_its_lead(portal, client):
    commands = []
    for index in range(60):
        fields = {"TITLE": f"Lead {index}", "SOURCE_ID": "CALL", "ORIGIN_ID": f"k{index}"}
        commands.append(Command(f"lead{index}", "crm.lead.add", {"fields": fields}))
        commands.append(Command(f"call{index}", "telephony.externalcall.register",
                                {"USER_ID": 1, "PHONE_NUMBER": f"+336120{index:05d}", "TYPE": 2,
                                 "EXTERNAL_CALL_ID": f"linked.{index}", "CRM_ENTITY_TYPE": "LEAD",
                                 "CRM_ENTITY_ID": f"$result[lead{index}]", "CRM_CREATE": 0, "SHOW": 0}))
    done = await client.batch(commands)
    assert done.ok, done.errors
    assert portal.batches == [50, 50, 20]
    assert portal.requests == 3
    for index in range(60):
        call = portal.calls[done.results[f"call{index}"]["CALL_ID"]]
        assert call.params["CRM_ENTITY_ID"] == done.results[f"lead{index}"]
        assert portal.records["lead"][done.results[f"lead{index}"]]["TITLE"] == f"Lead {index}"
    assert portal.violations == []


async def test_reference_to_a_command_of_an_earlier_request_is_filled_in_by_the_client(portal, client):
    commands = [Command(f"lead{index}", "crm.lead.add", {"fields": {"TITLE": f"Lead {index}", "ORIGIN_ID": f"k{index}"}})
                for index in range(50)]
    commands.append(Command("move", "crm.lead.update", {"id": "$result[lead0]", "fields": {"ASSIGNED_BY_ID": 1}}))
    done = await client.batch(commands)
    assert done.ok, done.errors
    assert portal.batches == [50, 1]
    assert portal.records["lead"][done.results["lead0"]]["ASSIGNED_BY_ID"] == "1"


async def test_one_refused_command_of_a_batch_is_rejected_and_the_others_done(portal, client):
    done = await client.batch([Command("ok", "crm.lead.add", LEAD),
                               Command("bad", "crm.lead.update", {"id": 999, "fields": {"ASSIGNED_BY_ID": 1}})])
    assert isinstance(done.results["ok"], int)
    assert isinstance(done.errors["bad"], CrmRejected)
    assert "NOT_FOUND" in str(done.errors["bad"])


async def test_batch_that_cannot_be_delivered_marks_every_unsent_command_unavailable(portal, client):
    commands = [Command(f"lead{index}", "crm.lead.add", {"fields": {"TITLE": "x", "ORIGIN_ID": f"k{index}"}})
                for index in range(60)]
    portal.fail_next(2, 503, "INTERNAL_SERVER_ERROR", "down")
    done = await client.batch(commands)
    assert set(done.errors) == {command.name for command in commands}
    assert all(isinstance(error, CrmUnavailable) for error in done.errors.values())
    assert portal.records["lead"] == {}


async def test_expired_token_is_refreshed_once_for_many_concurrent_requests(portal, app_client, tokens_file):
    portal.expire_token()
    results = await asyncio.gather(*(app_client.call("crm.settings.mode.get") for _ in range(10)))
    assert results == [1] * 10
    assert portal.refreshes == 1
    saved = json.loads(tokens_file.read_text())
    assert (saved["access_token"], saved["refresh_token"]) == (portal.access_token, portal.refresh_token)
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    assert [p.name for p in tokens_file.parent.iterdir()] == [tokens_file.name]  # no temporary file left


async def test_lookup_giving_up_during_a_slow_token_refresh_keeps_the_new_tokens_and_the_next_call_works(
        portal, app_client, tokens_file):
    """The OAuth server issues the new pair (the old refresh token is dead from then on) but
    answers after the lookup's deadline: the refresh still ends, its pair is kept in memory and
    in the tokens file, so later calls and later refreshes work without a reinstall."""
    operations = Bitrix24Operations(app_client, EmployeeDirectory([]))
    portal.expire_token()
    portal.refresh_answer_delay = 0.5
    with pytest.raises(RemoteCrmUnavailable, match="no answer within 200 ms"):
        await operations.find_client("+33612000001", deadline_seconds=0.2)
    assert await app_client.call("crm.settings.mode.get") == 1  # waits for that refresh, not a second one
    assert portal.refreshes == 1
    saved = json.loads(tokens_file.read_text())
    assert (saved["access_token"], saved["refresh_token"]) == (portal.access_token, portal.refresh_token)
    portal.refresh_answer_delay = 0.0
    portal.expire_token()  # the refresh token kept in memory is the new one: the portal takes it
    assert await app_client.call("crm.settings.mode.get") == 1
    assert portal.refreshes == 2


async def test_client_closed_during_a_token_refresh_saves_the_new_tokens_first(portal, app_client, tokens_file):
    """The daemon stops while a refresh waits for the OAuth server: the new pair (the only one
    the portal still takes) is in the tokens file for the next start."""
    portal.expire_token()
    portal.refresh_answer_delay = 0.5
    with pytest.raises(RemoteCrmUnavailable, match="no answer within 200 ms"):
        await Bitrix24Operations(app_client, EmployeeDirectory([])).find_client("+33612000001", deadline_seconds=0.2)
    await app_client.close()
    saved = json.loads(tokens_file.read_text())
    assert (saved["access_token"], saved["refresh_token"]) == (portal.access_token, portal.refresh_token)


async def test_tokens_refreshed_by_another_process_are_taken_from_the_file_not_refreshed_again(
        portal, app_client, tokens_file):
    """`agi-daemon simulate` (a second process of the same application) refreshed the tokens
    while the daemon ran: the daemon's refresh token is dead. At its next expiry the daemon
    refreshes with the file's refresh token, not its own (which the OAuth server refuses: a
    reinstall)."""
    await refresh_through(oauth_client(portal, tokens_file), portal)  # the other process
    assert portal.refreshes == 1
    assert await app_client.call("crm.settings.mode.get") == 1  # the daemon: expired, refreshed from the file's
    assert portal.refreshes == 2
    assert json.loads(tokens_file.read_text())["refresh_token"] == portal.refresh_token


async def test_two_processes_refreshing_the_same_pair_at_once_both_end_with_working_tokens(portal, tokens_file):
    """The daemon and `agi-daemon simulate` meet the expiry together and both send the same
    refresh token: the OAuth server takes the first and refuses the second (invalid_grant). The
    refused one refreshes again from the pair the other wrote, instead of failing."""
    clients = [oauth_client(portal, tokens_file) for _ in range(2)]
    for client in clients:
        await client.open()
    try:
        portal.expire_token()
        assert await asyncio.gather(*(client.call("crm.settings.mode.get") for client in clients)) == [1, 1]
    finally:
        for client in clients:
            await client.close()
    assert portal.refreshes == 2
    assert json.loads(tokens_file.read_text())["refresh_token"] == portal.refresh_token


async def test_a_pair_that_could_not_be_saved_is_kept_and_the_older_file_never_taken_for_a_newer_one(
        portal, tokens_file):
    """The disk is full at a refresh: the new pair lives on in memory (the file keeps the old
    one). At the next expiry the daemon refreshes with its own pair, not with the file's dead
    one, which it could take for another process's."""
    full: list[int] = []

    def full_disk(path, tokens, extra):
        full.append(1)
        raise OSError(28, "No space left on device")

    client = oauth_client(portal, tokens_file, save=full_disk)
    await client.open()
    try:
        for _ in range(2):
            portal.expire_token()
            assert await client.call("crm.settings.mode.get") == 1
    finally:
        await client.close()
    assert (portal.refreshes, len(full)) == (2, 2)


async def test_a_refresh_by_root_leaves_the_tokens_file_to_its_owner(portal, tokens_file):
    """An admin runs `agi-daemon simulate` as root on the daemon user's tokens file: the file
    rewritten at the refresh still belongs to the daemon's user (mode 600), who must read it."""
    if os.geteuid() != 0:
        pytest.fail("this test gives the tokens file to another user: run the suite as root, as `make test` does")
    os.chown(tokens_file, 65534, 65534)  # the daemon's user: nobody, here
    await refresh_through(oauth_client(portal, tokens_file), portal)
    written = tokens_file.stat()
    assert json.loads(tokens_file.read_text())["refresh_token"] == portal.refresh_token
    assert (written.st_uid, written.st_gid, stat.S_IMODE(written.st_mode)) == (65534, 65534, 0o600)


async def test_token_still_expired_after_a_refresh_is_rejected_after_one_retry(portal, app_client):
    portal.expire_token()
    portal.refresh_gives_expired_tokens = True
    with pytest.raises(RemoteCrmRejected, match="still expired after a refresh") as raised:
        await app_client.call("crm.settings.mode.get")
    assert raised.value.code == "expired_token"
    assert portal.refreshes == 1
    assert portal.requests == 2


async def test_refused_refresh_token_is_rejected_and_asks_for_a_reinstall(portal, app_client):
    portal.expire_token()
    portal.refresh_token = "revoked"
    with pytest.raises(RemoteCrmRejected, match="reinstall the application") as raised:
        await app_client.call("crm.settings.mode.get")
    assert raised.value.code == "invalid_grant"


@pytest.mark.parametrize(("break_portal", "expected", "code"), [
    (lambda p: p.fail_next(1, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests"), RemoteCrmUnavailable, "QUERY_LIMIT_EXCEEDED"),
    (lambda p: p.fail_next(1, 429, "OPERATION_TIME_LIMIT", "Method is blocked", retry_after="7"),
     RemoteCrmUnavailable, "OPERATION_TIME_LIMIT"),
    (lambda p: p.fail_next(1, 500, "INTERNAL_SERVER_ERROR", "Internal server error"), RemoteCrmUnavailable,
     "INTERNAL_SERVER_ERROR"),
    (lambda p: p.fail_next(1, 502, None), RemoteCrmUnavailable, None),
    (lambda p: p.time_out_next(1, 1.5), RemoteCrmUnavailable, None),
    (lambda p: p.fail_next(1, 403, "ACCESS_DENIED", "Access denied."), RemoteCrmRejected, "ACCESS_DENIED"),
    (lambda p: p.fail_next(1, 401, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method"),
     RemoteCrmRejected, "WRONG_AUTH_TYPE"),
    (lambda p: p.malformed_next(1), RemoteCrmRejected, None),
    (lambda p: p.fail_next(1, 502, None, body=PROXY_PAGE), RemoteCrmUnavailable, None),
    (lambda p: p.fail_next(1, 200, None, body=PROXY_PAGE), RemoteCrmRejected, None),
], ids=["503-query-limit", "429-operation-time-limit", "500", "502-html", "timeout", "403-access-denied",
        "wrong-auth-type", "malformed-json", "502-page-not-utf8", "200-page-not-utf8"])
async def test_portal_failure_becomes_the_crm_error_a_retry_can_or_cannot_fix(portal, client, break_portal, expected, code):
    break_portal(portal)
    with pytest.raises(expected) as raised:
        await client.call("crm.settings.mode.get")
    assert raised.value.code == code
    assert str(raised.value).startswith(f"127.0.0.1:{portal.port} crm.settings.mode.get: ")


async def test_retry_after_of_the_portal_is_handed_to_the_caller(portal, client):
    portal.fail_next(1, 429, "OPERATION_TIME_LIMIT", "Method is blocked", retry_after="7")
    with pytest.raises(RemoteCrmUnavailable) as raised:
        await client.call("crm.settings.mode.get")
    assert raised.value.retry_after_seconds == 7


@pytest.mark.parametrize(("header", "seconds"), [
    ("inf", None), ("nan", None), ("-5", None), ("1e9", MAX_RETRY_AFTER_SECONDS),
    ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_SECONDS), ("30", 30.0)])
async def test_retry_after_of_the_portal_never_parks_the_caller_longer_than_the_maximum(portal, client, header, seconds):
    portal.fail_next(1, 429, "OPERATION_TIME_LIMIT", "Method is blocked", retry_after=header)
    with pytest.raises(RemoteCrmUnavailable) as raised:
        await client.call("crm.settings.mode.get")
    assert raised.value.retry_after_seconds == seconds


def test_printable_drops_control_characters_but_tab_and_line_feed():
    assert printable("a\x00b\tc\nd\x1b[0m\r\x07\x7f\x85\x9fe ü") == "ab\tc\nd[0me ü"


async def test_control_characters_of_the_portals_answers_never_reach_an_error_or_a_log(portal, client, caplog):
    caplog.set_level(logging.DEBUG)
    portal.fail_next(1, 403, "ACCESS_DENIED", "Access\x00 denied\x1b[31m for\r you\x7f.\tAsk\nthe admin")
    with pytest.raises(RemoteCrmRejected) as raised:
        await client.call("crm.settings.mode.get")
    assert str(raised.value).endswith("HTTP 403 ACCESS_DENIED: Access denied[31m for you.\tAsk\nthe admin")
    # the portal's error_description of one command of a batch echoes what it was sent
    done = await client.batch([Command("call", "telephony.externalcall.register",
                                       {"USER_PHONE_INNER": "10\x00\x1b9", "PHONE_NUMBER": "+33612000001", "TYPE": 2})])
    assert str(done.errors["call"]).endswith("ERROR_USER_NOT_FOUND: telephony.externalcall.register no user has the "
                                             "internal phone 109")
    for text in (caplog.text, str(raised.value), str(done.errors["call"])):
        assert "\x00" not in text and "\x1b" not in text and "\r" not in text


async def test_token_refresh_answered_by_a_page_not_in_utf8_is_unavailable_and_the_next_refresh_works(
        portal, app_client):
    portal.expire_token()
    portal.fail_refresh_next(1, 502, PROXY_PAGE)
    with pytest.raises(RemoteCrmUnavailable, match="HTTP 502"):
        await app_client.call("crm.settings.mode.get")
    assert await app_client.call("crm.settings.mode.get") == 1
    assert portal.refreshes == 1


async def test_query_limit_exceeded_makes_the_client_wait_before_its_next_request(portal, client):
    portal.fail_next(1, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    with pytest.raises(RemoteCrmUnavailable) as raised:
        await client.call("crm.settings.mode.get")
    # the portal's bucket is full: the hint is how long ours takes to leave room for a write
    assert raised.value.retry_after_seconds == pytest.approx(client.bucket.wait_seconds(), abs=0.05)
    assert client.bucket.wait_seconds() > 0


async def test_refused_connection_is_unavailable(portal, client):
    await portal.refuse_connections()
    with pytest.raises(RemoteCrmUnavailable, match="connection refused"):
        await client.call("crm.settings.mode.get")
    await portal.accept_connections()
    assert await client.call("crm.settings.mode.get") == 1


async def test_revoked_webhook_is_rejected_with_the_portals_message(portal):
    url = portal.webhook_url.replace(portal.webhook_secret, "revoked-secret")
    client = Bitrix24Client(WebhookAuth(url), LeakyBucket(2, 50))
    await client.open()
    try:
        with pytest.raises(RemoteCrmRejected, match="INVALID_CREDENTIALS: Invalid request credentials") as raised:
            await client.call("crm.settings.mode.get")
    finally:
        await client.close()
    assert "revoked-secret" not in str(raised.value)


async def test_secrets_appear_in_no_log_line_error_or_repr(portal, client, app_client, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = [portal.webhook_secret, portal.client_secret, portal.access_token, portal.refresh_token]
    errors = []
    portal.fail_next(1, 403, "ACCESS_DENIED", f"denied for {portal.webhook_secret}")
    portal.time_out_next(1, 1.5)
    portal.malformed_next(1)
    for _ in range(3):
        try:
            await client.call("crm.settings.mode.get")
        except (CrmRejected, CrmUnavailable) as exc:
            errors.append(exc)
    portal.expire_token()
    await app_client.call("crm.settings.mode.get")  # refreshed: the new tokens are secrets too
    secrets += [portal.access_token, portal.refresh_token]
    portal.fail_next(1, 500, "INTERNAL_SERVER_ERROR", f"oops {portal.access_token}")
    with pytest.raises(RemoteCrmUnavailable) as raised:
        await app_client.call("crm.settings.mode.get")
    errors.append(raised.value)
    await portal.refuse_connections()
    with pytest.raises(RemoteCrmUnavailable) as raised:
        await client.call("crm.settings.mode.get")
    errors.append(raised.value)
    assert len(errors) == 5
    texts = [caplog.text, *map(str, errors), *map(repr, errors), repr(client), repr(app_client),
             repr(client._auth), repr(app_client._auth)]
    assert "crm.settings.mode.get" in caplog.text
    for secret in secrets:
        for text in texts:
            assert secret not in text


async def test_command_needing_a_refused_command_is_refused_without_being_sent(portal, client):
    commands = [Command(f"lead{index}", "crm.lead.add", {"fields": {"TITLE": f"Lead {index}", "ORIGIN_ID": f"k{index}"}})
                for index in range(50)]
    commands[0] = Command("lead0", "crm.lead.update", {"id": 999, "fields": {"TITLE": "gone"}})
    commands.append(Command("move", "crm.lead.update", {"id": "$result[lead0]", "fields": {"ASSIGNED_BY_ID": 1}}))
    done = await client.batch(commands)
    assert isinstance(done.errors["lead0"], RemoteCrmRejected)
    assert isinstance(done.errors["move"], RemoteCrmRejected)  # its id will never exist
    assert portal.batches == [50]  # nothing left to send in the second request


async def test_batch_with_an_expired_token_is_sent_again_after_the_refresh(portal, app_client):
    portal.expire_token()
    done = await app_client.batch([Command("lead", "crm.lead.add", LEAD),
                                   Command("call", "telephony.externalcall.register",
                                           {"USER_ID": 1, "PHONE_NUMBER": "+33612000001", "TYPE": 2,
                                            "EXTERNAL_CALL_ID": "L9", "CRM_ENTITY_TYPE": "LEAD",
                                            "CRM_ENTITY_ID": "$result[lead]"})])
    assert done.ok, done.errors
    assert portal.refreshes == 1
    assert len(portal.records["lead"]) == 1 and len(portal.calls) == 1


async def test_portal_down_then_back_writes_each_record_once(portal, client):
    commands = [Command(f"lead{index}", "crm.lead.add", {"fields": {"TITLE": "x", "ORIGIN_ID": f"k{index}"}})
                for index in range(3)]
    outcomes = []
    for break_portal in (lambda: portal.fail_next(1, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests"),
                         lambda: portal.fail_next(1, 502, None), lambda: portal.time_out_next(1, 1.0)):
        break_portal()
        outcomes.append(await client.batch(commands))
    await portal.refuse_connections()
    outcomes.append(await client.batch(commands))
    await portal.accept_connections()
    client.bucket = LeakyBucket(2, 50)  # the QUERY_LIMIT_EXCEEDED wait is the outbox's business, not this test's
    assert all(isinstance(error, CrmUnavailable) for outcome in outcomes for error in outcome.errors.values())
    assert all(len(outcome.errors) == 3 for outcome in outcomes)
    done = await client.batch(commands)
    assert done.ok
    assert sorted(record["ORIGIN_ID"] for record in portal.records["lead"].values()) == ["k0", "k1", "k2"]
