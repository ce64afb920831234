"""A call whose Asterisk linkedid is as long as Asterisk allows (an originated channel's own id,
or asterisk.conf's systemname prefix), from a daemon naming its PBX with the longest pbx_id:
its records, their reassignment and its log are stored, on SQLite and on PostgreSQL (which
checks column lengths)."""
from __future__ import annotations

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from agi_daemon.core.commands import CallCardChange, CallReport, ChangeResponsible, CreateCallRecords, LogCall
from agi_daemon.core.model import Direction
from agi_daemon.crm.database import database_url
from agi_daemon.crm.embedded import EmbeddedCrm
from agi_daemon.crm.outbox import Delivery, Outbox
from agi_daemon.crm.tables import metadata
from tests.crm.test_outbox import call_of, delivering, rows
from tests.fakes.database import migrate_to
from tests.fakes.polling import eventually

pytestmark = pytest.mark.databases("sqlite", "postgresql")

PHONE = "+33612000099"
LINKEDID = "pbx-paris-main-" + "7" * 134  # 149 characters, Asterisk's longest uniqueid
PBX = "p" * 32  # the longest daemon.pbx_id


async def test_the_longest_linkedid_of_the_longest_pbx_id_gets_its_records_reassignment_and_log(crm, new_client):
    assert len(LINKEDID) == 149
    outbox = Outbox(crm, Delivery(crm), pbx=PBX, first_delay=0.01)
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client(PHONE, LINKEDID)))
        await outbox.submit(ChangeResponsible(LINKEDID, PHONE, "b" * 64, 1))
        await outbox.submit(LogCall(call_of(LINKEDID, PHONE), CallReport.TRACKED, PHONE))
        await eventually(lambda: _delivered(crm, 3), timeout=5)
    [lead] = await crm.list_records("leads")
    [logged] = await crm.list_records("calls")
    assert (lead["created_by_call"], lead["created_by_pbx"], lead["responsible"]) == (LINKEDID, PBX, "b" * 64)
    assert (logged["linkedid"], logged["pbx"], logged["entity"]) == (LINKEDID, PBX, f"lead:{lead['id']}")


async def test_the_call_card_of_a_whole_queue_group_is_stored_and_delivered(crm):
    """Bitrix24's call card shown to, then hidden from, 30 employees of a ring-all queue group
    (ids of 64 characters) for the longest linkedid: each change is one command of its own."""
    group = tuple(f"{'e' * 62}{n:02}" for n in range(30))
    outbox = Outbox(crm, Delivery(crm), pbx=PBX, first_delay=0.01)
    async with delivering(outbox):
        for show in (True, False):
            await outbox.submit(CallCardChange(LINKEDID, PHONE, Direction.INCOMING, "+33184880000", group, show))
        await outbox.submit(CallCardChange(LINKEDID, PHONE, Direction.INCOMING, "+33184880000", group[1:], False))
        await eventually(lambda: _delivered(crm, 3), timeout=5)
    assert await _delivered(crm, 3)


async def _delivered(crm, count: int) -> bool:
    states = [status for status, _, _ in (await rows(crm)).values()]
    return states == ["delivered"] * count


@pytest.mark.databases("sqlite")
async def test_a_database_of_the_previous_version_keeps_its_records_and_their_one_lead_per_call(tmp_path, new_client):
    url = f"sqlite:///{tmp_path}/crm.sqlite3"
    migrate_to(url, "0006_outbox_claims")
    engine = sqlalchemy.create_engine(database_url(url))
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO leads (name, responsible, source, created_by_call, created_by_call_phone, "
                             "created_at, status) VALUES ('Call', 'alice', 'CALL', '1700000000.5', :phone, "
                             "'2026-12-01 09:00:00', 'NEW')", {"phone": PHONE})
        conn.exec_driver_sql("INSERT INTO phones (entity_type, entity_id, e164) VALUES ('lead', 1, :phone)",
                             {"phone": PHONE})
    engine.dispose()
    async with EmbeddedCrm(url) as crm:  # upgrades to this version's schema
        [lead] = await crm.list_records("leads")
        again = await crm.create_records(new_client(PHONE, "1700000000.5"))  # the same call asks again
        assert await crm.list_records("leads") == [lead]
        assert str(again.primary) == f"lead:{lead['id']}"
        differences = await crm.transaction(
            "compare", lambda conn: compare_metadata(MigrationContext.configure(conn), metadata), write=False)
    assert (lead["created_by_call"], lead["responsible"]) == ("1700000000.5", "alice")
    assert differences == []
    engine = sqlalchemy.create_engine(database_url(url))
    with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as conn:  # the rebuilt table kept it
        conn.exec_driver_sql("INSERT INTO leads (name, created_by_call, created_by_call_phone, created_at, status) "
                             "VALUES ('Twice', '1700000000.5', :phone, '2026-12-01 09:00:00', 'NEW')", {"phone": PHONE})
    engine.dispose()


@pytest.mark.databases("sqlite")
async def test_a_database_of_the_previous_version_with_deals_and_converted_leads_is_upgraded_whole(tmp_path):
    """The tables a migration rebuilds on SQLite (copied, dropped, renamed) are referenced by
    others' foreign keys: a deal's contact, a converted lead's contact and deal. The upgrade
    keeps every row and every link."""
    url = f"sqlite:///{tmp_path}/crm.sqlite3"
    migrate_to(url, "0006_outbox_claims")
    engine = sqlalchemy.create_engine(database_url(url))
    at = "'2026-12-01 09:00:00'"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO contacts (name, created_by_call, created_at) VALUES ('Dupont', 'c1', {at})")
        conn.exec_driver_sql(f"INSERT INTO companies (name, created_at) VALUES ('Dupont SARL', {at})")
        conn.exec_driver_sql("INSERT INTO deals (name, created_at, pipeline, stage, contact_id, company_id) "
                             f"VALUES ('Deal', {at}, 'general', 'NEW', 1, 1)")
        conn.exec_driver_sql("INSERT INTO leads (name, created_at, status, converted_contact_id, converted_deal_id) "
                             f"VALUES ('Lead', {at}, 'CONVERTED', 1, 1)")
    engine.dispose()
    async with EmbeddedCrm(url) as crm:  # upgrades to this version's schema
        [deal] = await crm.list_records("deals")
        [lead] = await crm.list_records("leads")
        [contact] = await crm.list_records("contacts")
    assert (deal["contact"], deal["company"], contact["created_by_call"]) == ("contact:1", "company:1", "c1")
    assert sorted(lead["converted_to"]) == ["contact:1", "deal:1"]
    engine = sqlalchemy.create_engine(database_url(url))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    engine.dispose()


@pytest.mark.databases("sqlite")
async def test_a_database_already_up_to_date_opens_whatever_references_an_old_tool_left_broken(tmp_path):
    """The references are checked after a migration ran, not at every start: a contact deleted
    by hand (sqlite3's shell does not enforce foreign keys) does not keep the daemon down."""
    url = f"sqlite:///{tmp_path}/crm.sqlite3"
    async with EmbeddedCrm(url) as crm:
        await crm.add_record("contact", "Dupont", "+33612000011", None)
    engine = sqlalchemy.create_engine(database_url(url))  # foreign keys not enforced, as in sqlite3's shell
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO deals (name, created_at, pipeline, stage, contact_id) "
                             "VALUES ('Deal', '2026-12-01 09:00:00', 'general', 'NEW', 99)")
    engine.dispose()
    async with EmbeddedCrm(url) as crm:
        assert [deal["name"] for deal in await crm.list_records("deals")] == ["Deal"]

