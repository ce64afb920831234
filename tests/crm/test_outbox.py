"""The outbox on the real store: every command stored before it is delivered, delivered once,
in order within its lane, retried with backoff after a failure, a dead letter when the CRM
rejects it or it keeps failing; with the embedded CRM and with a remote deliverer (a
hand-written one, as the Bitrix24 and webhook adapters plug in)."""
from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from agi_daemon.core.commands import (
    CallLedger, CallReport, ChangeResponsible, CreateCallRecords, CrmCommand, LedgerUpdate, LogCall, replaces,
)
from agi_daemon.core.model import CallRecord, CreatedRecords, Direction, Disposition, EntityRef, EntityType
from agi_daemon.core.ports import CrmRejected, CrmUnavailable
from agi_daemon.crm import outbox_store
from agi_daemon.crm.outbox import Delivery, Outbox
from tests.fakes.polling import eventually

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def call_of(linkedid: str, phone: str) -> CallRecord:
    return CallRecord(linkedid, Direction.INCOMING, "+33184880000", phone, Disposition.ANSWERED, AT,
                      AT + timedelta(seconds=30))


@contextlib.asynccontextmanager
async def delivering(outbox: Outbox):
    task = asyncio.create_task(outbox.run())
    await eventually(lambda: outbox._started, timeout=5)
    try:
        yield outbox
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def rows(store) -> dict[str, tuple[str, int, str | None]]:
    """key -> (status, attempts, last_error)"""
    def read(conn):
        return {key: (status, attempts, error) for key, status, attempts, error in conn.execute(
            outbox_store.outbox.select().with_only_columns(
                outbox_store.outbox.c.key, outbox_store.outbox.c.status, outbox_store.outbox.c.attempts,
                outbox_store.outbox.c.last_error))}

    return await store.transaction("test: read the outbox", read, write=False)


class RemoteCrm:
    """A remote CRM as the outbox sees it: it records what it was asked, in order; `down` makes
    the next deliveries fail as unavailable (with a retry hint), `refuse` rejects a kind."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, CallLedger]] = []
        self.finished: list[CallReport] = []
        self.asked: list[str] = []
        self.down = 0
        self.retry_after = 0.01
        self.refuse: type | None = None
        self.ids = iter(range(1000, 2000))

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, command: CrmCommand, ledger: CallLedger) -> LedgerUpdate:
        self.asked.append(command.key)
        if self.down:
            self.down -= 1
            raise CrmUnavailable("503 QUERY_LIMIT_EXCEEDED", retry_after=self.retry_after)
        if self.refuse is not None and isinstance(command, self.refuse):
            raise CrmRejected("400 ERROR_CORE: wrong phone")
        self.delivered.append((command.key, ledger))
        if isinstance(command, CreateCallRecords):
            lead = EntityRef(EntityType.LEAD, next(self.ids))
            return LedgerUpdate(created=CreatedRecords(lead), remote_ids={str(lead): f"B24-{lead.id}"})
        if isinstance(command, LogCall):  # the remote call log keeps what merge_call_log keeps
            existing = None if ledger.logged is None else ledger.logged is CallReport.PARTIAL
            if replaces(existing, command.report):
                self.finished.append(command.report)
                return LedgerUpdate(logged=command.report)
        return LedgerUpdate()


class HeldDelivery(Delivery):
    """The worker's delivery, held back until `go` is set: whatever is applied meanwhile was
    applied by `submit` itself, not by the worker."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.go = asyncio.Event()
        self.asked: list[int] = []

    async def __call__(self, row_id: int):
        self.asked.append(row_id)
        await self.go.wait()
        return await super().__call__(row_id)


async def test_embedded_command_is_stored_and_applied_at_once_and_a_second_submit_changes_nothing(crm, new_client):
    held = HeldDelivery(crm)
    outbox = Outbox(crm, held)
    async with delivering(outbox):
        command = CreateCallRecords(new_client("+33611000001", "L1"))
        await outbox.submit(command)
        await outbox.submit(command)
        # applied before submit returned: the worker, held back, delivered nothing
        assert len(await crm.list_records("leads")) == 1 and held.asked == []
        assert (await rows(crm))["L1/records"][0] == "delivered"
        ledger = await outbox.ledger("L1")
        assert ledger.created is not None and str(ledger.created.lead) == f"lead:{(await crm.list_records('leads'))[0]['id']}"


async def test_commands_left_pending_by_an_earlier_run_are_delivered_at_start(crm, new_client):
    def leave(conn):
        outbox_store.add(conn, CreateCallRecords(new_client("+33611000002", "L2")), AT)
        outbox_store.add(conn, LogCall(call_of("L2", "+33611000002"), CallReport.HANGUP, "+33611000002"), AT)

    await crm.transaction("test: an earlier run", leave, write=True)
    async with delivering(Outbox(crm, Delivery(crm))):
        logged = await eventually(lambda: crm.list_records("calls"), timeout=5)
    [lead] = await crm.list_records("leads")
    assert logged[0]["entity"] == f"lead:{lead['id']}"  # in order: the lead first, then the call on it


async def test_call_log_delivered_before_its_records_ends_on_them_once_they_are_created(crm, new_client):
    """The database held long enough for the call's log to go first (its end waits at most 10 s
    for the records): the records, when they come, take the call that is logged on none (R12)."""
    outbox = Outbox(crm, Delivery(crm))
    async with delivering(outbox):
        await outbox.submit(LogCall(call_of("L9", "+33611000009"), CallReport.HANGUP, None))
        [logged] = await crm.list_records("calls")
        assert logged["entity"] is None
        await outbox.submit(CreateCallRecords(new_client("+33611000009", "L9")))
    [lead] = await crm.list_records("leads")
    [logged] = await crm.list_records("calls")
    assert logged["entity"] == f"lead:{lead['id']}"


async def test_remote_failures_are_retried_in_order_within_the_call_while_other_calls_go_on(crm, new_client):
    remote = RemoteCrm()
    outbox = Outbox(crm, Delivery(crm, remote), first_delay=0.01)
    async with delivering(outbox):
        remote.down = 3
        await outbox.submit(CreateCallRecords(new_client("+33611000003", "L3")))
        await outbox.submit(LogCall(call_of("L3", "+33611000003"), CallReport.TRACKED, "+33611000003"))
        await eventually(lambda: len(remote.delivered) == 2, timeout=5)
        await outbox.submit(ChangeResponsible("L3", "+33611000003", "bob", 1))
        await eventually(lambda: len(remote.delivered) == 3, timeout=5)
    assert [key for key, _ in remote.delivered] == ["L3/records", "L3/call/tracked", "L3/responsible/1/bob"]
    assert remote.asked[:4] == ["L3/records"] * 4  # the call's log waited behind its records
    created = remote.delivered[-1][1]  # what the daemon remembers of the call: no need to ask the CRM
    assert created.created is not None and created.remote_ids == {str(created.created.lead): f"B24-{created.created.lead.id}"}
    assert {status for status, _, _ in (await rows(crm)).values()} == {"delivered"}


async def test_one_call_failing_does_not_hold_the_others(crm, new_client):
    remote = RemoteCrm()
    outbox = Outbox(crm, Delivery(crm, remote))
    async with delivering(outbox):
        remote.down, remote.retry_after = 1, 30  # the portal asks for 30 s
        await outbox.submit(CreateCallRecords(new_client("+33611000004", "L4")))  # fails: retried in 15-30 s
        await eventually(lambda: remote.asked, timeout=5)
        await outbox.submit(CreateCallRecords(new_client("+33611000005", "L5")))
        assert await eventually(lambda: [key for key, _ in remote.delivered] == ["L5/records"], timeout=5)
    assert (await rows(crm))["L4/records"][:2] == ("pending", 1)


async def test_rejected_command_is_a_dead_letter_at_once_and_retry_delivers_it(crm, new_client):
    remote = RemoteCrm()
    remote.refuse = CreateCallRecords
    outbox = Outbox(crm, Delivery(crm, remote))
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client("+33611000006", "L6")))
        await eventually(lambda: outbox_dead(crm), timeout=5)
        assert (await rows(crm))["L6/records"] == ("dead", 1, "400 ERROR_CORE: wrong phone")
        assert remote.asked == ["L6/records"]
        remote.refuse = None
        [dead] = await crm.transaction("test: list", outbox_store.listing, write=False)
        back = await crm.transaction("test: retry", lambda conn: outbox_store.retry(conn, dead["id"], datetime.now(UTC)),
                                     write=True)
        outbox.retry_now(back)
        await eventually(lambda: remote.delivered, timeout=5)
    assert (await rows(crm))["L6/records"][0] == "delivered"


async def test_retry_of_a_pending_command_counts_again_from_zero_and_keeps_its_claim(crm, new_client):
    """`outbox retry` on a command a daemon is delivering (its claim's lease runs) must not free
    it for another daemon to send at the same time."""
    def pending(conn):
        outbox_store.add(conn, CreateCallRecords(new_client("+33611000012", "R1")), AT)
        return [waiting.id for waiting in outbox_store.waiting(conn)]

    [row_id] = await crm.transaction("test: a command", pending, write=True)
    now = datetime.now(UTC)
    assert await crm.transaction("test: claim", lambda conn: outbox_store.take(
        conn, row_id, now, claim=("pbx1:1", timedelta(minutes=2))), write=True) is not None
    await crm.transaction("test: failed once", lambda conn: outbox_store.failed(
        conn, row_id, "503", dead=False, now=now), write=True)
    await crm.transaction("test: claim again", lambda conn: outbox_store.take(
        conn, row_id, now, claim=("pbx1:1", timedelta(minutes=2))), write=True)

    assert await crm.transaction("test: retry", lambda conn: outbox_store.retry(conn, row_id, datetime.now(UTC)), write=True) is not None

    assert (await rows(crm))["R1/records"][:2] == ("pending", 0)
    assert await crm.transaction("test: another daemon", lambda conn: outbox_store.take(
        conn, row_id, now, claim=("pbx2:2", timedelta(minutes=2))), write=True) is None


async def outbox_dead(crm) -> bool:
    return any(status == "dead" for status, _, _ in (await rows(crm)).values())


async def test_command_still_failing_after_max_attempts_is_a_dead_letter(crm, new_client):
    remote = RemoteCrm()
    remote.down = 100
    outbox = Outbox(crm, Delivery(crm, remote), max_attempts=3, first_delay=0.01)
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client("+33611000007", "L7")))
        await eventually(lambda: outbox_dead(crm), timeout=5)
    assert (await rows(crm))["L7/records"] == ("dead", 3, "503 QUERY_LIMIT_EXCEEDED")
    assert len(remote.asked) == 3


async def test_when_the_crm_answers_again_the_lanes_waiting_out_a_backoff_are_retried_at_once(crm, new_client):
    """Three new callers' records failed while the CRM was down, each lane now waiting a long
    backoff; the next command that goes through shows the CRM is back: they follow at once."""
    remote = RemoteCrm()
    remote.down, remote.retry_after = 3, None
    outbox = Outbox(crm, Delivery(crm, remote), first_delay=60)
    async with delivering(outbox):
        for index in range(3):
            await outbox.submit(CreateCallRecords(new_client(f"+3361100002{index}", f"B{index}")))
        await eventually(lambda: len(remote.asked) == 3, timeout=5)  # each failed once: 30-60 s to wait
        await outbox.submit(CreateCallRecords(new_client("+33611000029", "B9")))  # the CRM is back
        delivered = await eventually(lambda: len(remote.delivered) == 4, timeout=5)
    assert delivered
    assert sorted(key for key, _ in remote.delivered) == ["B0/records", "B1/records", "B2/records", "B9/records"]

async def test_outbox_list_shows_no_number_and_no_name(crm, new_client):
    remote = RemoteCrm()
    remote.down = 100
    outbox = Outbox(crm, Delivery(crm, remote), first_delay=60)
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(replace(new_client("+33611000008", "L8"), name="Jeanne Martin")))
        await eventually(lambda: remote.asked, timeout=5)
        listed = await crm.transaction("test: list", outbox_store.listing, write=False)
    assert [(row["kind"], row["linkedid"], row["status"]) for row in listed] == [("create_records", "L8", "pending")]
    assert "611000008" not in str(listed) and "Jeanne" not in str(listed)


async def test_error_kept_for_a_dead_letter_never_shows_a_webhook_secret_or_token(crm, new_client):
    remote = RemoteCrm()
    outbox = Outbox(crm, Delivery(crm, remote))

    async def leaky(command, ledger):
        raise CrmRejected("POST https://portal.bitrix24.fr/rest/11/q8w7e6r5t4y3/crm.lead.add failed;"
                          " retry https://user:pa55@crm.example.com/x?access_token=abc123&x=1")

    remote.deliver = leaky
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client("+33611000009", "L9")))
        await eventually(lambda: outbox_dead(crm), timeout=5)
        [dead] = await outbox.listing()
    error = dead["last_error"]
    assert "q8w7e6r5t4y3" not in error and "pa55" not in error and "abc123" not in error
    assert "/rest/11/***/crm.lead.add" in error


async def test_error_kept_for_a_dead_letter_shows_a_quoted_number_by_its_last_digits_only(crm, new_client):
    """A receiver's 422 (pydantic's "input") or PostgreSQL's DETAIL quote the number back: the
    error the outbox keeps, lists and logs shows it as every log line does, and keeps the call."""
    remote = RemoteCrm()
    outbox = Outbox(crm, Delivery(crm, remote))

    async def quoting(command, ledger):
        raise CrmRejected('1700000000.77/records: HTTP 422 {"input": "+33611000011"}'
                          " DETAIL: Key (phone)=(33611000011) national 0611000011")

    remote.deliver = quoting
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client("+33611000011", "1700000000.77")))
        await eventually(lambda: outbox_dead(crm), timeout=5)
        [dead] = await outbox.listing()
    error = dead["last_error"]
    assert "611000011" not in error and error.count("…0011") == 3
    assert error.startswith("1700000000.77/records: HTTP 422")


@pytest.mark.databases("sqlite", "postgresql")
async def test_an_error_quoting_control_characters_is_kept_without_them_and_the_outbox_goes_on(crm, new_client):
    """A remote answer may quote a NUL (a PostgreSQL text column refuses it) or a terminal
    escape: the error is kept without them, and the outbox keeps delivering."""
    remote = RemoteCrm()
    outbox = Outbox(crm, Delivery(crm, remote), first_delay=0.01)
    answers = iter([CrmUnavailable("502 <html>\x00\x00 bad gateway"), CrmRejected("400 \x1b[31mwrong\x1b[0m phone")])

    async def garbled(command, ledger):
        error = next(answers, None)
        if error is not None:
            remote.asked.append(command.key)
            raise error
        return await RemoteCrm.deliver(remote, command, ledger)

    remote.deliver = garbled
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client("+33611000010", "N1")))
        await eventually(lambda: outbox_dead(crm), timeout=5)
        await outbox.submit(CreateCallRecords(new_client("+33611000011", "N2")))
        await eventually(lambda: [key for key, _ in remote.delivered] == ["N2/records"], timeout=5)
    kept = await rows(crm)
    assert kept["N1/records"] == ("dead", 2, "400 [31mwrong[0m phone")
    assert kept["N2/records"][0] == "delivered"


async def test_remote_call_log_learns_which_report_it_holds_so_a_later_report_yields(crm):
    remote = RemoteCrm()
    outbox = Outbox(crm, Delivery(crm, remote))
    async with delivering(outbox):
        for report in (CallReport.PARTIAL, CallReport.TRACKED, CallReport.HANGUP):
            await outbox.submit(LogCall(replace(call_of("L10", "+33611000010"), partial=report is CallReport.PARTIAL),
                                        report, "+33611000010"))
        await eventually(lambda: len(remote.delivered) == 3, timeout=5)
    assert remote.finished == [CallReport.PARTIAL, CallReport.TRACKED]  # the hangup report came last: it yields
    assert (await outbox.ledger("L10")).logged is CallReport.TRACKED


def held_outbox(crm, remote, hold: float) -> Outbox:
    return Outbox(crm, Delivery(crm, remote), first_delay=0.01, hold_hangup_reports=hold)


async def test_hangup_report_held_back_is_superseded_by_trackings_report_of_the_call(crm):
    """A remote CRM that keeps the first report (Bitrix24 cannot un-finish a call) gets only
    tracking's, which names the transfers, though the hangup report was submitted first."""
    remote = RemoteCrm()
    phone = "+33611000011"
    async with delivering(held_outbox(crm, remote, hold=30.0)) as outbox:
        await outbox.submit(LogCall(call_of("L11", phone), CallReport.HANGUP, phone))
        await outbox.submit(LogCall(replace(call_of("L11", phone), answered_by="bob"), CallReport.TRACKED, phone))
        await eventually(lambda: len(remote.delivered) == 1, timeout=5)  # at once: not after the 30 s hold
    assert remote.asked == ["L11/call/tracked"] and remote.finished == [CallReport.TRACKED]
    found = await rows(crm)
    assert found["L11/call/hangup"][0] == "superseded" and found["L11/call/tracked"][0] == "delivered"
    assert (await outbox.depth()).pending == 0


async def test_hangup_report_is_delivered_after_the_grace_when_tracking_never_reports(crm):
    remote = RemoteCrm()
    phone = "+33611000012"
    async with delivering(held_outbox(crm, remote, hold=0.3)) as outbox:
        loop = asyncio.get_running_loop()
        submitted = loop.time()
        await outbox.submit(LogCall(call_of("L12", phone), CallReport.HANGUP, phone))
        assert loop.time() - submitted < 0.3  # durable at once: nothing waits for the grace
        await eventually(lambda: len(remote.delivered) == 1, timeout=5)
        delivered_after = loop.time() - submitted
        await outbox.submit(LogCall(call_of("L12", phone), CallReport.TRACKED, phone))  # too late: the CRM merges
        await eventually(lambda: len(remote.asked) == 2, timeout=5)
    assert delivered_after >= 0.3
    assert remote.finished == [CallReport.HANGUP, CallReport.TRACKED]  # this remote merges as the call log does
    assert {status for status, _, _ in (await rows(crm)).values()} == {"delivered"}


async def test_other_calls_are_not_held_by_a_held_hangup_report(crm, new_client):
    remote = RemoteCrm()
    async with delivering(held_outbox(crm, remote, hold=30.0)) as outbox:
        await outbox.submit(LogCall(call_of("L13", "+33611000013"), CallReport.HANGUP, "+33611000013"))
        await outbox.submit(CreateCallRecords(new_client("+33611000014", "L14")))
        await outbox.submit(LogCall(call_of("L14", "+33611000014"), CallReport.TRACKED, "+33611000014"))
        await eventually(lambda: len(remote.delivered) == 2, timeout=5)
    assert [key for key, _ in remote.delivered] == ["L14/records", "L14/call/tracked"]


async def test_hangup_report_held_by_a_daemon_killed_is_delivered_at_once_by_the_next(crm):
    """kill -9 during the hold: the row is durable and its hold dies with the daemon (a claim of
    a process that no longer runs); the next start delivers it once, without waiting."""
    phone = "+33611000015"

    def held(conn):
        waiting = outbox_store.add(conn, LogCall(call_of("L15", phone), CallReport.HANGUP, phone), AT)
        outbox_store.hold(conn, waiting.id, f"{socket.gethostname()}:999999999",  # a pid that no longer runs
                          datetime.now(UTC) + timedelta(hours=1))

    await crm.transaction("test: a killed daemon's hold", held, write=True)
    remote = RemoteCrm()
    async with delivering(held_outbox(crm, remote, hold=3600.0)):
        await eventually(lambda: len(remote.delivered) == 1, timeout=5)
    assert remote.finished == [CallReport.HANGUP]
    assert (await rows(crm))["L15/call/hangup"][0] == "delivered"


async def test_trackings_report_after_the_grace_still_supersedes_a_hangup_report_never_sent(crm, new_client):
    """The portal is down: the call's records wait for it, and the hangup report behind them
    outlives its grace; tracking's report, late, still replaces it, since it was never sent."""
    remote = RemoteCrm()
    phone = "+33611000016"
    async with delivering(held_outbox(crm, remote, hold=0.05)) as outbox:
        remote.down = 10**6
        await outbox.submit(CreateCallRecords(new_client(phone, "L16")))
        await outbox.submit(LogCall(call_of("L16", phone), CallReport.HANGUP, phone))
        # four retries of the records: at least 0.01 + 0.02 + 0.04 + 0.08 s, halved by jitter, past the grace
        await eventually(lambda: len(remote.asked) >= 5, timeout=5)
        await outbox.submit(LogCall(replace(call_of("L16", phone), answered_by="bob"), CallReport.TRACKED, phone))
        remote.down = 0
        await eventually(lambda: len(remote.delivered) == 2, timeout=10)
    assert [key for key, _ in remote.delivered] == ["L16/records", "L16/call/tracked"]
    assert (await rows(crm))["L16/call/hangup"][0] == "superseded"


async def test_the_outbox_stops_when_its_stop_comes_as_a_delivery_finishes(crm, new_client):
    """The daemon's stop cancels the outbox while a remote CRM is answering: on Python 3.11,
    `wait_for` around the delivery lost that cancellation, and the stop waited for ever (seen
    once in a full run of the suite)."""
    remote = RemoteCrm()
    outbox = Outbox(crm, Delivery(crm, remote))
    running = asyncio.create_task(outbox.run())
    answer = remote.deliver

    async def answer_as_the_stop_comes(command, ledger):
        running.cancel()  # the stop arrives while the CRM answers
        return await answer(command, ledger)

    remote.deliver = answer_as_the_stop_comes  # type: ignore[method-assign]
    await eventually(lambda: outbox._started, timeout=5)
    await outbox.submit(CreateCallRecords(new_client("+33611000099", "L99")))
    done, _ = await asyncio.wait({running}, timeout=5)

    assert done == {running} and running.cancelled()
    assert remote.delivered and remote.delivered[0][0] == "L99/records"


class RefusingStore:
    """The real store, except that it refuses (CrmRejected, as a schema another daemon is
    migrating or a revoked grant makes it; or `error`) the transactions `refused` names, that
    many times."""

    def __init__(self, crm, refused: dict[str, int], error: type[Exception] = CrmRejected) -> None:
        self._crm = crm
        self.left = dict(refused)
        self.error = error

    def __getattr__(self, name):
        return getattr(self._crm, name)

    async def transaction(self, action, work, *, write):
        if self.left.get(action, 0) > 0:
            self.left[action] -= 1
            raise self.error(f'{action}: relation "outbox" does not exist')
        return await self._crm.transaction(action, work, write=write)


async def test_a_store_refusing_the_outbox_upkeep_never_stops_the_daemon_and_deliveries_go_on(crm, new_client, caplog):
    """Freeing dead claims, reading the backlog at start, counting, picking up and purging
    refused: each is tried again, logged once as an error, and commands are still delivered."""
    # at start: claims freed once (a lease frees them anyway), the backlog read until it works;
    # then every 5 s the count (twice refused: two rounds), and the purge (once a day)
    store = RefusingStore(crm, {"free a dead daemon's claims": 1, "read the outbox": 2, "count the outbox": 2,
                                "purge the outbox": 1})
    remote = RemoteCrm()
    outbox = Outbox(store, Delivery(store, remote), first_delay=0.01)
    running = asyncio.create_task(outbox.run())
    try:
        await outbox.submit(CreateCallRecords(new_client("+33611000013", "R13")))
        assert await eventually(lambda: remote.delivered, timeout=10)
        assert await eventually(lambda: not any(store.left.values()), timeout=15), store.left
        await outbox.refresh()
        await asyncio.sleep(0.1)
        assert not running.done(), running.exception() if running.done() else None
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert [key for key, _ in remote.delivered] == ["R13/records"]
    refusals = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "refused" in r.getMessage()]
    assert any("count the outbox" in message for message in refusals)
    assert len([m for m in refusals if "count the outbox" in m]) == 1  # logged once, not every round


async def test_a_command_the_remote_crm_took_is_not_sent_again_when_the_store_cannot_mark_it_at_once(crm, new_client):
    """The portal created the lead and registered the call; marking the command delivered then
    fails (another daemon's lock, a lost connection). It is tried again, not sent again: sent
    again once its claim ran out, with a ledger that never learned the call, it would register
    a second call on the portal."""
    store = RefusingStore(crm, {"mark a CRM command delivered": 3}, error=CrmUnavailable)
    remote = RemoteCrm()
    outbox = Outbox(store, Delivery(store, remote), first_delay=0.01)
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client("+33611000014", "R14")))
        assert await eventually(lambda: _status(crm, "R14/records", "delivered"), timeout=10)
    assert remote.asked == ["R14/records"]
    ledger = await outbox.ledger("R14")
    assert ledger.created is not None and ledger.remote_ids


async def _status(crm, key: str, wanted: str) -> bool:
    found = (await rows(crm)).get(key)
    return found is not None and found[0] == wanted


async def test_a_dead_letter_of_a_long_outage_retried_survives_a_transient_failure(crm, new_client):
    """After a two-day outage the admin retries the dead letters; the portal answers the first
    try with a rate limit. The command stays pending and is delivered: its age is counted from
    the retry, not from the call two days ago (dead_letter_after_hours 24)."""
    two_days_ago = datetime.now(UTC) - timedelta(days=2)

    def dead_letter(conn):
        row_id = outbox_store.add(conn, CreateCallRecords(new_client("+33611000015", "R15")), two_days_ago).id
        outbox_store.failed(conn, row_id, "503 portal down", dead=True, now=two_days_ago + timedelta(hours=24))
        return row_id

    row_id = await crm.transaction("test: a dead letter", dead_letter, write=True)
    remote = RemoteCrm()
    remote.down = 1  # QUERY_LIMIT_EXCEEDED once
    outbox = Outbox(crm, Delivery(crm, remote), first_delay=0.01)
    async with delivering(outbox):
        assert await outbox.retry(row_id)
        assert await eventually(lambda: remote.delivered, timeout=5)
    assert remote.asked == ["R15/records", "R15/records"]
    assert (await rows(crm))["R15/records"][0] == "delivered"


async def test_retry_of_a_pending_command_in_a_running_daemon_counts_its_attempts_from_zero(crm, new_client):
    """The admin retries a command still pending after failures, one short of max_attempts:
    the running daemon's own count restarts too, so its next failure does not make it dead."""
    remote = RemoteCrm()
    remote.down, remote.retry_after = 100, 0.2
    outbox = Outbox(crm, Delivery(crm, remote), max_attempts=3, first_delay=0.01)
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client("+33611000016", "R16")))
        await eventually(lambda: len(remote.asked) == 2, timeout=5)  # two failures of three
        [row_id] = [row["id"] for row in await crm.transaction("test: list", outbox_store.listing, write=False)]
        assert await outbox.retry(row_id)
        await eventually(lambda: len(remote.asked) == 3, timeout=5)  # a third failure: the first since the retry
        await asyncio.sleep(0.1)
        status, attempts, _ = (await rows(crm))["R16/records"]
    assert (status, attempts) == ("pending", 1)


async def test_a_calls_stored_offer_is_read_back_by_its_own_pbxs_daemon_only(crm):
    """What a restarted daemon reads for a call found in progress (its routing, and its offer,
    happened in the earlier run); several PBXs on one store each read their own call."""
    from agi_daemon.core.commands import RecordOffer
    from agi_daemon.core.model import Offer

    offer = Offer("1700.5", Direction.INCOMING, "+33472000000", "+33611000005", ("alice", "bob"), AT)
    lyon, paris = Outbox(crm, Delivery(crm), pbx="lyon"), Outbox(crm, Delivery(crm), pbx="paris")
    async with delivering(lyon):
        await lyon.submit(RecordOffer(offer))
    assert await lyon.offer("1700.5") == offer
    assert await paris.offer("1700.5") is None  # Paris's call of the same linkedid made none
    assert await lyon.offer("1700.6") is None
