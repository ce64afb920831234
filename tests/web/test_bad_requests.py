"""Malformed HTTP input gets a clear 400 (or a 404 for an id no record can have), never a 500
with a traceback: a body that is not a JSON object, an id past what int() or the database
holds, a date filter that cannot be read."""
from __future__ import annotations

import pytest

from tests.daemon_harness import LYON, UNKNOWN, running_daemon
from tests.web.harness import base_url, http_login, new_session, set_passwords, web_config
from tests.web.test_offer_api import ringing

MAX_ID = 2**31 - 1  # the largest record id (PostgreSQL's INTEGER)

BAD_BODIES = [  # (body, Content-Type, what the 400 says)
    (b"{not json", "application/json", "the body is not JSON"),
    (b"", "application/json", "the body is not JSON"),
    (b"\xff\xfe", "application/json", "the body is not JSON"),  # not UTF-8
    (b"{}", "application/json; charset=no-such-charset", "the body is not JSON"),
    (b"[]", "application/json", "the body is not a JSON object"),
    (b'"x"', "application/json", "the body is not a JSON object"),
    (b"12", "application/json", "the body is not a JSON object"),
    (b"null", "application/json", "the body is not a JSON object"),
]


async def _csrf(http, daemon) -> str:
    async with http.get(f"{base_url(daemon)}/api/me") as me:
        return (await me.json())["csrf"]


async def test_a_body_that_is_not_a_json_object_is_a_400_naming_the_problem(tmp_path, crm):
    lead = await crm.add_record("lead", "Martine Dupuis", UNKNOWN, "alice", source="CALL")
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        ringing(daemon, "json-call", LYON)
        url = base_url(daemon)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            token = await _csrf(alice, daemon)
            for path in ("/api/calls/json-call/records", f"/api/records/lead/{lead['id']}"):
                for body, content_type, problem in BAD_BODIES:
                    async with alice.post(f"{url}{path}", data=body,
                                          headers={"X-CSRF-Token": token, "Content-Type": content_type}) as answer:
                        assert (answer.status, await answer.text()) == (400, problem), (path, body, content_type)
            async with alice.post(f"{url}/api/records/lead/{lead['id']}", json={"name": "Martine Leroy"},
                                  headers={"X-CSRF-Token": token}) as answer:  # a JSON object still goes through
                assert answer.status == 200, await answer.text()
    [after] = await crm.list_records("leads")
    assert (after["name"], after["responsible"]) == ("Martine Leroy", "alice")  # left out: kept
    assert await crm.list_records("contacts") == []  # none of the bad bodies created anything


async def test_an_edit_through_the_api_checks_each_field_it_is_given_and_keeps_the_others(tmp_path, crm):
    lead = await crm.add_record("lead", "Martine Dupuis", UNKNOWN, "alice", source="CALL")
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        url = f"{base_url(daemon)}/api/records/lead/{lead['id']}"
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            token = await _csrf(alice, daemon)
            answers = []
            for body in ({"name": None}, {"name": 12}, {"responsible": ["bob"]}, {"name": "x" * 256},
                         {"responsible": "bob"}, {"responsible": None}):
                async with alice.post(url, json=body, headers={"X-CSRF-Token": token}) as answer:
                    answers.append((answer.status, await answer.text()))
    assert [status for status, _ in answers] == [400, 400, 400, 400, 200, 200]
    assert "name: text expected" in answers[0][1] and "responsible: an employee id" in answers[2][1]
    assert "longer than 255 characters" in answers[3][1]
    [after] = await crm.list_records("leads")
    assert (after["name"], after["responsible"]) == ("Martine Dupuis", None)  # bob, then cleared


@pytest.mark.databases("sqlite", "postgresql")
async def test_an_id_no_record_can_have_is_a_404_on_every_route_that_names_a_record(tmp_path, crm):
    lead = await crm.add_record("lead", "Martine Dupuis", UNKNOWN, "alice", source="CALL")
    ids = ["9" * 5000, str(2**64), str(2**63), str(MAX_ID + 1), "0", "000"]  # 5,000 digits: past int()'s limit
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        url = base_url(daemon)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            token = await _csrf(alice, daemon)
            form = {"csrf": token, "name": "Nobody", "responsible": "alice"}
            routes = [
                lambda i: alice.get(f"{url}/crm/lead/{i}"),
                lambda i: alice.post(f"{url}/crm/contact/{i}", data=form, allow_redirects=False),
                lambda i: alice.post(f"{url}/crm/lead/{i}/convert", data={"csrf": token}, allow_redirects=False),
                lambda i: alice.get(f"{url}/api/records/deal/{i}"),
                lambda i: alice.post(f"{url}/api/records/company/{i}", json={"name": "Nobody"},
                                     headers={"X-CSRF-Token": token}),
                lambda i: alice.post(f"{url}/api/records/lead/{i}/convert", headers={"X-CSRF-Token": token}),
            ]
            for record_id in ids:
                for route in routes:
                    async with route(record_id) as answer:
                        text = await answer.text()
                        assert answer.status == 404, (record_id[:30], answer.url.path[:60], answer.status, text)
                        assert "no such record" in text or text.startswith("no lead:"), text
            for path in (f"/crm/lead/{MAX_ID}", f"/api/records/lead/{MAX_ID}"):  # the largest id: the database's
                async with alice.get(f"{url}{path}") as answer:
                    assert answer.status == 404, (path, answer.status, await answer.text())
            async with alice.get(f"{url}/api/records/lead/{lead['id']}") as found:  # a real id still answers
                assert found.status == 200 and (await found.json())["name"] == "Martine Dupuis"
            async with alice.get(f"{url}/api/records/lead/000{lead['id']}") as padded:  # the same number
                assert padded.status == 200
    [after] = await crm.list_records("leads")
    assert (after["name"], after["status"]) == ("Martine Dupuis", "NEW")


async def test_a_date_filter_that_cannot_be_read_is_a_400_naming_the_parameter(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        url = base_url(daemon)
        async with new_session() as carol:
            await http_login(carol, daemon, "carol")
            for path in ("/api/records/contacts", "/api/calls", "/crm/leads", "/crm/calls"):
                for query, parameter in [("to=9999-12-31", "to"),  # no next day
                                         ("from=0001-01-01T00:00%2B01:00", "from"),  # before year 1 in UTC
                                         ("to=9999-12-31T23:30-01:00", "to"),  # after year 9999 in UTC
                                         ("from=yesterday", "from")]:
                    async with carol.get(f"{url}{path}?{query}") as answer:
                        text = await answer.text()
                        assert answer.status == 400, (path, query, answer.status, text)
                        assert text.startswith(f"{parameter}: not a date"), (path, query, text)
                async with carol.get(f"{url}{path}?from=0001-01-01&to=9999-12-30") as widest:
                    assert widest.status == 200, (path, await widest.text())


async def test_pages_read_while_the_database_stalls_answer_503_saying_so(tmp_path):
    """Another program holds the daemon's database and a write waits on it: past the stall
    threshold the store refuses at once, and the pages and the API say the CRM does not
    answer (503) instead of failing with a traceback."""
    import asyncio
    import sqlite3

    from agi_daemon.crm.embedded import EmbeddedCrm

    database = tmp_path / "crm.sqlite3"
    async with EmbeddedCrm(f"sqlite:///{database}", busy_timeout_ms=3000, stalled_after=0.3) as crm:
        async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
            await set_passwords(crm)
            url = base_url(daemon)
            async with new_session() as alice:
                await http_login(alice, daemon, "alice")
                holder = sqlite3.connect(database, isolation_level=None)
                holder.execute("BEGIN IMMEDIATE")  # another program's write lock
                try:
                    stuck = asyncio.create_task(crm.add_record("lead", "Waiting", UNKNOWN, "alice"))
                    await asyncio.sleep(0.5)  # the write is in flight past the stall threshold
                    answers = []
                    for path in ("/crm/leads", "/api/records/leads", "/crm/calls"):
                        async with alice.get(f"{url}{path}") as answer:
                            answers.append((path, answer.status, await answer.text()))
                finally:
                    holder.execute("ROLLBACK")
                    holder.close()
                await stuck
    assert [(path, status) for path, status, _ in answers] == [
        ("/crm/leads", 503), ("/api/records/leads", 503), ("/crm/calls", 503)]
    assert all("the CRM does not answer now" in text for _, _, text in answers)


async def test_an_edit_of_the_name_keeps_a_responsible_who_has_left_the_config(tmp_path, crm):
    lead = await crm.add_record("lead", "Martine Dupuis", UNKNOWN, "dave")  # dave left the YAML file since
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            token = await _csrf(alice, daemon)
            async with alice.post(f"{base_url(daemon)}/api/records/lead/{lead['id']}", json={"name": "Martine Leroy"},
                                  headers={"X-CSRF-Token": token}) as answer:
                status = answer.status, await answer.text()
    [after] = await crm.list_records("leads")
    assert status[0] == 200, status
    assert (after["name"], after["responsible"]) == ("Martine Leroy", "dave")

