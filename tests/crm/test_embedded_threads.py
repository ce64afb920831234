"""The embedded CRM's worker threads: concurrent callers, a busy database, closing."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from agi_daemon.core.model import CreatedRecords, CrmMode, EntityRef, EntityType, Match
from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.crm.embedded import EmbeddedCrm

pytestmark = pytest.mark.databases("sqlite", "postgresql")

KNOWN = "+33612000001"


@contextmanager
def write_lock_held(database: Path) -> Iterator[sqlite3.Connection]:
    """Another process's writer holding the database's write lock until the block ends (or
    until the caller rolls it back)."""
    blocker = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield blocker
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()


async def test_two_creations_and_many_lookups_at_once_all_succeed(
    crm: EmbeddedCrm, new_client
) -> None:
    await crm.add_record("contact", "Known", KNOWN, "bob")
    known = Match(EntityRef(EntityType.CONTACT, 1), "bob", "Known")

    first, second, *matches = await asyncio.gather(
        crm.create_records(new_client("+33612000002", "17000.1", mode=CrmMode.SIMPLE)),
        crm.create_records(new_client("+33612000003", "17000.2", mode=CrmMode.SIMPLE)),
        *(crm.find_by_phone(KNOWN) for _ in range(50)),
        *(crm.find_by_phone("+33699999999") for _ in range(10)),
    )

    assert first.lead != second.lead and first.contact != second.contact
    assert matches == [known] * 50 + [None] * 10
    assert len(await crm.list_records("leads")) == 2
    assert await crm.records_created_by_call("17000.2") == second


@pytest.mark.databases("sqlite")
async def test_a_write_waiting_for_the_lock_blocks_neither_the_loop_nor_the_readers(
    crm: EmbeddedCrm, new_client, tmp_path: Path
) -> None:
    await crm.add_record("contact", "Known", KNOWN, "bob")
    loop = asyncio.get_running_loop()
    with write_lock_held(tmp_path / "crm.sqlite3") as blocker:
        creating = asyncio.create_task(crm.create_records(new_client("+33612000002", "17000.1")))
        # the loop keeps turning while the write waits: a loop blocked by it would stand still
        # until the write gave up (the busy timeout, 5 s: the lock is this loop's to release)
        lags = []
        for _ in range(20):
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)
        match = await asyncio.wait_for(crm.find_by_phone(KNOWN), 1)  # WAL: readers go on
        assert max(lags) < 2.0, f"the event loop stood still {max(lags):.1f} s while a write waited"
        assert not creating.done()  # the write was waiting all along
        blocker.execute("ROLLBACK")

        created = await asyncio.wait_for(creating, 5)

    assert match is not None
    assert created == CreatedRecords(lead=EntityRef(EntityType.LEAD, 1))


async def test_operations_do_not_wait_for_the_loops_default_executor(crm: EmbeddedCrm) -> None:
    await crm.add_record("contact", "Known", KNOWN, "bob")
    loop = asyncio.get_running_loop()
    default = ThreadPoolExecutor(1)
    loop.set_default_executor(default)
    release = threading.Event()
    stuck = loop.run_in_executor(None, release.wait)  # the only default thread is busy
    try:
        match = await asyncio.wait_for(crm.find_by_phone(KNOWN), 2)
    finally:
        release.set()
        await stuck

    assert match is not None and match.name == "Known"


async def test_close_waits_for_the_operation_in_flight(tmp_path: Path, new_client) -> None:
    url = f"sqlite:///{tmp_path}/crm.sqlite3"
    crm = EmbeddedCrm(url)
    await crm.open()
    with write_lock_held(tmp_path / "crm.sqlite3") as blocker:
        creating = asyncio.create_task(crm.create_records(new_client(KNOWN, "17000.1")))
        await asyncio.sleep(0.05)  # the create now waits for the lock in its worker thread
        asyncio.get_running_loop().call_later(0.2, blocker.execute, "ROLLBACK")

        await crm.close()

        assert creating.done() and not creating.cancelled()
    assert creating.result() == CreatedRecords(lead=EntityRef(EntityType.LEAD, 1))
    with pytest.raises(CrmUnavailable):
        await crm.find_by_phone(KNOWN)
    async with EmbeddedCrm(url) as reopened:
        assert len(await reopened.list_records("leads")) == 1


async def test_a_caller_that_gives_up_leaves_the_transaction_to_finish(
    tmp_path: Path, new_client
) -> None:
    url = f"sqlite:///{tmp_path}/crm.sqlite3"
    crm = EmbeddedCrm(url)
    await crm.open()
    with write_lock_held(tmp_path / "crm.sqlite3") as blocker:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(crm.create_records(new_client(KNOWN, "17000.1")), 0.05)
        blocker.execute("ROLLBACK")

        await crm.close()  # waits for the create the caller gave up on

    async with EmbeddedCrm(url) as reopened:
        assert await reopened.records_created_by_call("17000.1") is not None


async def test_stalled_database_answers_busy_to_writes_and_still_answers_lookups(tmp_path) -> None:
    """A lock held for long (another process, a backup): writes beyond the backlog fail at
    once with CrmUnavailable, so retries add no copies; lookups (WAL readers) still answer,
    so known clients still reach their responsible."""
    import sqlite3

    from agi_daemon.core.ports import CrmUnavailable

    path = tmp_path / "crm.sqlite3"
    async with EmbeddedCrm(f"sqlite:///{path}", busy_timeout_ms=4000, stalled_after=0.2) as crm:
        await crm.add_record("contact", "Known", KNOWN, "bob")
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            first = [asyncio.create_task(crm.add_record("contact", f"C{n}", f"+3361100{n:04d}", None)) for n in range(8)]
            await asyncio.sleep(0.4)  # the first ones wait on the lock past stalled_after: stalled
            started = asyncio.get_running_loop().time()
            writes = await asyncio.gather(*(crm.add_record("lead", f"L{n}", f"+3361200{n:04d}", None) for n in range(50)),
                                          return_exceptions=True)
            lookups = await asyncio.gather(*(crm.find_by_phone(KNOWN) for _ in range(50)))
            answered_in = asyncio.get_running_loop().time() - started
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    await asyncio.gather(*first, return_exceptions=True)
    busy = [r for r in writes if isinstance(r, CrmUnavailable) and "not keeping up" in str(r)]
    assert len(busy) == 50 and answered_in < 0.5
    assert {match.name for match in lookups if match is not None} == {"Known"} and None not in lookups


async def test_writes_arriving_together_commit_together_and_one_failure_fails_only_its_caller(
    crm: EmbeddedCrm, new_client
) -> None:
    from agi_daemon.core.ports import CrmRejected

    results = await asyncio.gather(
        *(crm.create_records(new_client(f"+3361200{n:04d}", f"17000.{n}")) for n in range(10)),
        crm.set_responsible((EntityRef(EntityType.LEAD, 999),), "bob"),
        *(crm.add_record("contact", f"C{n}", f"+3361300{n:04d}", None) for n in range(10)),
        return_exceptions=True,
    )

    created, refused, added = results[:10], results[10], results[11:]
    assert isinstance(refused, CrmRejected)
    assert all(isinstance(r, CreatedRecords) for r in created) and len({r.lead for r in created}) == 10
    assert len(await crm.list_records("leads")) == 10 and len(await crm.list_records("contacts")) == 10
    assert [r["name"] for r in added] == [f"C{n}" for n in range(10)]
