"""The offer's "create" through the JSON API (R3, R5, R9): who may create, what, on which line.
The call board is fed the live events call tracking would publish."""
from __future__ import annotations

from datetime import UTC, datetime

from agi_daemon.core.live_calls import OfferMade, Ringing
from agi_daemon.core.model import Direction, Offer
from tests.daemon_harness import LYON, PARIS, UNKNOWN, running_daemon
from tests.web.harness import base_url, http_login, new_session, set_passwords, web_config


def ringing(daemon, linkedid: str, line: str, employee: str = "alice", *, offer: bool = True) -> None:
    now = datetime.now(UTC)
    daemon.live.publish(Ringing(linkedid, employee, Direction.INCOMING, line, UNKNOWN, now))
    if offer:
        daemon.live.publish(OfferMade(Offer(linkedid, Direction.INCOMING, line, UNKNOWN, ("alice", "bob"), now)))


async def csrf_token(http, daemon) -> str:
    async with http.get(f"{base_url(daemon)}/api/me") as me:
        return (await me.json())["csrf"]


async def create(http, daemon, linkedid: str, kind: str, name: str = "Jeanne Martin"):
    token = await csrf_token(http, daemon)
    async with http.post(f"{base_url(daemon)}/api/calls/{linkedid}/records", json={"kind": kind, "name": name},
                         headers={"X-CSRF-Token": token}) as response:
        return response.status, await response.text()


async def test_agent_creates_a_contact_from_the_offer_with_the_lines_source(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        ringing(daemon, "offer-call", LYON)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            status, body = await create(alice, daemon, "offer-call", "contact")
            assert status == 201 and '"contact:' in body
            again = await create(alice, daemon, "offer-call", "lead")  # the offer is taken
            assert again[0] == 409
    [contact] = await crm.list_records("contacts")
    assert (contact["name"], contact["source"], contact["responsible"], contact["phones"]) == \
        ("Jeanne Martin", "SUPPORT_CALL", "alice", [UNKNOWN])
    assert await crm.list_records("leads") == []


async def test_offer_cannot_be_taken_by_another_agent_nor_on_a_create_line(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        ringing(daemon, "alices-call", LYON)
        ringing(daemon, "paris-call", PARIS)  # unknown_caller: create there
        async with new_session() as bob, new_session() as alice:
            await http_login(bob, daemon, "bob")
            await http_login(alice, daemon, "alice")
            assert (await create(bob, daemon, "alices-call", "lead"))[0] == 404
            assert (await create(alice, daemon, "paris-call", "lead"))[0] == 409
            assert (await create(alice, daemon, "alices-call", "company"))[0] == 400  # classic: lead or contact
            assert (await create(alice, daemon, "no-such-call", "lead"))[0] == 404
    assert await crm.list_records("leads") == [] and await crm.list_records("contacts") == []


async def test_lead_from_the_offer_in_simple_mode_is_a_deal_with_its_contact(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path, mode="simple"), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        ringing(daemon, "simple-call", LYON)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            status, body = await create(alice, daemon, "simple-call", "deal")
    assert status == 201 and '"deal:' in body
    [deal] = await crm.list_records("deals")
    assert (deal["source"], deal["responsible"], deal["pipeline"], deal["created_by_call"]) == \
        ("SUPPORT_CALL", "alice", "general", "simple-call")
    assert deal["contact"] is not None


async def test_lead_from_the_offer_goes_through_the_outbox_like_every_crm_write(tmp_path, crm):
    from tests.crm.test_outbox import rows

    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        ringing(daemon, "outbox-call", LYON)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            status, body = await create(alice, daemon, "outbox-call", "lead")
    [lead] = await crm.list_records("leads")
    assert status == 201 and f'"lead:{lead["id"]}"' in body
    assert (await rows(crm))["outbox-call/records"][0] == "delivered"  # stored, then delivered: a remote CRM gets it
    assert lead["created_by_call"] == "outbox-call" and lead["responsible"] == "alice"


async def test_two_clicks_on_create_contact_at_once_create_one_contact_both_see(tmp_path, crm):
    import asyncio

    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        ringing(daemon, "double-click", LYON)
        async with new_session() as alice, new_session() as again:
            await http_login(alice, daemon, "alice")
            await http_login(again, daemon, "alice")
            answers = await asyncio.gather(create(alice, daemon, "double-click", "contact"),
                                           create(again, daemon, "double-click", "contact"))
    [contact] = await crm.list_records("contacts")
    assert await crm.list_records("leads") == []
    assert contact["created_by_call"] == "double-click"
    for status, body in answers:  # each click answered with the one contact, or told the offer is taken
        assert (status == 201 and f'"contact:{contact["id"]}"' in body) or status == 409, (status, body)
    assert any(status == 201 for status, _ in answers)



async def test_create_while_the_database_is_locked_answers_503_in_time_and_the_lead_is_created_once(
        tmp_path, monkeypatch, caplog):
    """Another program holds the daemon's database: the click is not stored within
    CREATED_WAIT_S, so it answers 503 (nothing confirmed) instead of hanging; a second click
    joins the first's submission instead of adding a retry loop. Once the database is back,
    that submission creates the lead, once, the card shows it, and no error was left
    unretrieved."""
    import asyncio
    import gc
    import sqlite3

    import aiohttp

    from agi_daemon.crm.embedded import EmbeddedCrm
    from agi_daemon.web import calls

    monkeypatch.setattr(calls, "CREATED_WAIT_S", 0.6)
    database = tmp_path / "crm.sqlite3"

    def unretrieved() -> list[str]:
        return [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]

    # The store's transactions give up on the lock after 0.4 s: the submission retries meanwhile.
    async with EmbeddedCrm(f"sqlite:///{database}", busy_timeout_ms=400) as crm:
        async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
            await set_passwords(crm)
            ringing(daemon, "locked-call", LYON)
            url = base_url(daemon)
            async with new_session() as alice:
                await http_login(alice, daemon, "alice")
                async with alice.get(f"{url}/api/me") as me:
                    token = (await me.json())["csrf"]

                async def click() -> tuple[int, str, float]:
                    loop = asyncio.get_running_loop()
                    started = loop.time()
                    async with alice.post(f"{url}/api/calls/locked-call/records", json={"kind": "lead"},
                                          headers={"X-CSRF-Token": token},
                                          timeout=aiohttp.ClientTimeout(total=10)) as response:
                        return response.status, await response.text(), loop.time() - started

                other = sqlite3.connect(database, isolation_level=None)
                other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
                try:
                    for _ in range(2):
                        status, text, took = await click()
                        assert status == 503, (status, text)
                        assert "nothing is confirmed" in text and "creates nothing twice" in text, text
                        assert took < 3, took
                        submissions = daemon.parts.web.context.submissions
                        assert len(submissions) == 1  # the second click joined the first's submission
                    assert any("CRM command waits for the store" in r.getMessage() for r in caplog.records)
                    assert await crm.list_records("leads") == []
                finally:
                    other.execute("ROLLBACK")
                    other.close()
                for _ in range(100):  # the first click's submission goes on: stored once the database is back
                    if not len(submissions):
                        break
                    await asyncio.sleep(0.05)
                assert not len(submissions)
                [lead] = await crm.list_records("leads")
                assert lead["created_by_call"] == "locked-call" and lead["responsible"] == "alice"
                assert str(daemon.live.board.call("locked-call").record) == f"lead:{lead['id']}"  # on the card
                status, text, _ = await click()  # the offer is taken: a third click creates nothing
                assert status == 409, (status, text)
        assert len(await crm.list_records("leads")) == 1
        gc.collect()
        assert unretrieved() == []


async def test_a_name_too_long_for_the_crm_is_refused_at_once_not_left_to_die_in_the_outbox(tmp_path, crm):
    """PostgreSQL refuses a name over 255 characters: the command became a dead letter while
    the agent read "asked", and the card kept its buttons. It is refused at the click."""
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        ringing(daemon, "long-name-call", LYON)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            status, body = await create(alice, daemon, "long-name-call", "lead", name="x" * 256)
            assert (status, body) == (400, "the name is longer than 255 characters (256)")
            assert (await create(alice, daemon, "long-name-call", "lead", name="x" * 255))[0] == 201
    [lead] = await crm.list_records("leads")
    assert len(lead["name"]) == 255


async def test_an_ended_calls_offer_is_taken_and_its_card_closed_through_the_api(tmp_path, crm):
    """The caller hung up before alice clicked: the offer is still hers to take, and once the
    contact is made the card stays on her window (naming it) until she closes it."""
    from agi_daemon.core.live_calls import Ended

    async def close(http, linkedid: str) -> int:
        token = await csrf_token(http, daemon)
        async with http.post(f"{base_url(daemon)}/api/calls/{linkedid}/close", headers={"X-CSRF-Token": token}) as r:
            return r.status

    async def live(http) -> list[dict]:
        async with http.get(f"{base_url(daemon)}/api/calls/live") as response:
            return await response.json()

    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        ringing(daemon, "gone-call", LYON)
        async with new_session() as alice, new_session() as bob:
            await http_login(alice, daemon, "alice")
            await http_login(bob, daemon, "bob")
            assert await close(alice, "gone-call") == 404  # a call in progress stays
            daemon.live.publish(Ended("gone-call", None))
            [shown] = await live(alice)
            assert (shown["state"], shown["offer"]) == ("ended", True)
            status, body = await create(alice, daemon, "gone-call", "contact")
            assert status == 201, body
            [shown] = await live(alice)
            assert shown["offer"] is False and shown["entity"]["name"] == "Jeanne Martin"
            assert await close(bob, "gone-call") == 404  # never on his window
            assert await close(alice, "gone-call") == 200
            assert await live(alice) == []
    [contact] = await crm.list_records("contacts")
    assert contact["responsible"] == "alice"
