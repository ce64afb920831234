"""R12 from the hangup report, on a hand-written in-memory CRM: the call is logged from what
routing decided, never decided again at hangup time; tracking's record wins."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from agi_daemon.core.decisions import RoutingStatus
from agi_daemon.core.model import CallRecord, Direction, Disposition, EntityType
from agi_daemon.core.outcome import HangupReport
from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.core.rules import CallEntry
from agi_daemon.services.call_log import CallLogService
from agi_daemon.services.pending import PendingWork
from agi_daemon.services.routed_calls import RoutedCalls
from agi_daemon.services.routing import RoutingService
from tests.fakes.clock import FixedClock
from tests.fakes.crm import MemoryCrm
from tests.fakes.rules import CLIENT, PARIS, make_rules, with_line_crm

ENTRY = CallEntry(Direction.INCOMING, "01 84 88 00 00", "06 11 22 33 44")


@pytest.fixture
async def tasks():
    async with asyncio.TaskGroup() as group:
        yield group


class Pbx:
    """Routing and the call log sharing one CRM, one clock and the running rules, which the
    test may reload."""

    def __init__(self, tasks, crm, rules) -> None:
        self.rules = rules
        self.crm = crm
        self.clock = FixedClock()
        self.pending = PendingWork(tasks.create_task)
        routed = RoutedCalls()
        self.routing = RoutingService(lambda: self.rules, crm, self.clock, self.pending, commands=crm, deadline=1.0,
                                      routed=routed)
        self.call_log = CallLogService(lambda: self.rules, crm, self.clock, self.pending, commands=crm, routed=routed,
                                       settle_timeout=5)

    def report(self, linkedid: str, entry: CallEntry = ENTRY, *, dialstatus="ANSWER", peer="101@employees") -> HangupReport:
        started = self.clock.at
        self.clock.at += timedelta(seconds=40)
        return HangupReport(linkedid, "ok", entry, dialstatus, 25.0 if dialstatus == "ANSWER" else None, peer, started)


async def test_hangup_report_logs_the_route_routing_chose_not_the_one_of_reloaded_rules(tasks):
    crm = MemoryCrm()
    known = crm.add_known(CLIENT, EntityType.CONTACT, "bob")
    pbx = Pbx(tasks, crm, make_rules())
    decision = await pbx.routing.route(ENTRY, "L1")
    assert decision.route.responsible == "bob"  # R6: bob first, then the queue group alice, bob
    # the admin reloads: known clients no longer go to their responsible, bob leaves the group
    reloaded = with_line_crm(make_rules(), route_known_to_responsible=False)
    pbx.rules = replace(reloaded, queue_groups={"sales": replace(reloaded.queue_groups["sales"], members=("alice",))})
    record = await pbx.call_log.call_ended(pbx.report("L1", peer="102@employees"))
    assert record.employees == ("bob", "alice")  # who was really rung
    assert (record.answered_by, record.entity, record.line) == ("bob", known.entity, PARIS)
    assert crm.calls["L1"] == record


async def test_hangup_report_of_a_call_routing_never_decided_is_identified_from_the_report(tasks):
    crm = MemoryCrm()
    known = crm.add_known(CLIENT, EntityType.COMPANY, "bob")
    pbx = Pbx(tasks, crm, make_rules())  # the daemon was down when the call came in: no decision
    record = await pbx.call_log.call_ended(pbx.report("L2"))
    assert (record.direction, record.line, record.number) == (Direction.INCOMING, PARIS, CLIENT)
    assert (record.employees, record.answered_by, record.entity) == (("alice",), "alice", known.entity)


async def test_hangup_report_of_a_new_client_is_logged_on_the_lead_the_call_created(tasks):
    crm = MemoryCrm()
    pbx = Pbx(tasks, crm, make_rules())
    decision = await pbx.routing.route(ENTRY, "L3")
    record = await pbx.call_log.call_ended(pbx.report("L3", dialstatus="NOANSWER", peer=""))
    [created] = crm.created.values()
    assert decision.status is RoutingStatus.OK
    assert (record.entity, record.disposition, record.employees) == (created.lead, Disposition.MISSED, ("alice", "bob"))
    assert record.ring_seconds == 40.0 and record.talk_seconds == 0.0


async def test_hangup_report_on_a_line_the_config_does_not_have_is_not_logged(tasks):
    crm = MemoryCrm()
    pbx = Pbx(tasks, crm, make_rules())
    assert await pbx.call_log.call_ended(pbx.report("L4", CallEntry(Direction.INCOMING, "0100000000", CLIENT))) is None
    assert crm.calls == {}


@pytest.mark.parametrize("tracking_first", [True, False], ids=["tracking-first", "report-first"])
async def test_tracking_record_wins_over_the_hangup_report_whichever_comes_first(tasks, tracking_first):
    crm = MemoryCrm()
    pbx = Pbx(tasks, crm, make_rules())
    await pbx.routing.route(ENTRY, "L5")
    at = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
    tracked = CallRecord("L5", Direction.INCOMING, PARIS, CLIENT, Disposition.ANSWERED, at, at + timedelta(seconds=60),
                         answered_by="bob", employees=("alice", "bob"), talk_seconds=50.0)
    if tracking_first:
        await pbx.call_log.tracked_call_ended(tracked)
        await pbx.call_log.call_ended(pbx.report("L5"))
    else:
        await pbx.call_log.call_ended(pbx.report("L5"))
        await pbx.call_log.tracked_call_ended(tracked)
    logged = crm.calls["L5"]
    assert (logged.answered_by, logged.talk_seconds) == ("bob", 50.0)
    assert logged.entity == crm.created["L5"].lead


async def test_excluded_number_is_routed_and_never_logged(tasks):
    crm = MemoryCrm()
    pbx = Pbx(tasks, crm, make_rules())
    blocked = CallEntry(Direction.INCOMING, "0184880000", "+33 1 40 00 00 00")
    decision = await pbx.routing.route(blocked, "L6")
    assert decision.status is RoutingStatus.EXCLUDED
    assert await pbx.call_log.call_ended(pbx.report("L6", blocked)) is None
    assert (crm.calls, crm.lookups, crm.created) == ({}, [], {})


class Heard:
    """A notifier that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list = []

    def publish(self, event) -> None:
        self.events.append(event)


async def test_hangup_report_of_an_offer_call_routing_never_saw_makes_the_offer_and_publishes_it(tasks):
    """The daemon restarted mid-call on an `offer` line: the report rebuilds the offer as routing
    would have, and the agents' call windows hear of it (the same submit as routing's)."""
    from agi_daemon.core.live_calls import OfferMade
    from agi_daemon.core.model import UnknownCaller

    crm, heard = MemoryCrm(), Heard()
    pbx = Pbx(tasks, crm, with_line_crm(make_rules(), unknown_caller=UnknownCaller.OFFER))
    pbx.call_log = CallLogService(lambda: pbx.rules, crm, pbx.clock, pbx.pending, commands=crm, routed=RoutedCalls(),
                                  settle_timeout=5, notifier=heard)
    await pbx.call_log.call_ended(pbx.report("L7"))
    assert "L7" in crm.offers and crm.offers["L7"].employees
    assert [type(e) for e in heard.events] == [OfferMade] and heard.events[0].offer.linkedid == "L7"


class HeldLookups(MemoryCrm):
    """Lookups answer once `answer` is set (a CRM that stays slow past the routing deadline)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def find_by_phone(self, phone):
        await self.answer.wait()
        return await super().find_by_phone(phone)


class MemoryKeptReports:
    """KeptReports in memory; `writes` counts what a store would have written."""

    def __init__(self) -> None:
        self.reports: dict[str, tuple[HangupReport, datetime]] = {}
        self.writes = 0

    async def keep(self, report, ended_at):
        self.writes += 1
        self.reports[report.linkedid] = (report, ended_at)

    async def forget(self, linkedid):
        self.writes += 1
        self.reports.pop(linkedid, None)

    async def kept(self):
        return list(self.reports.values())


def kept_services(tasks, crm, kept, *, settle_timeout=5.0, retry_delays=(0.01,)):
    clock, pending, routed = FixedClock(), PendingWork(tasks.create_task), RoutedCalls()
    routing = RoutingService(make_rules, crm, clock, pending, commands=crm, deadline=0.05, routed=routed)
    call_log = CallLogService(make_rules, crm, clock, pending, commands=crm, routed=routed,
                              settle_timeout=settle_timeout, retry_delays=retry_delays, kept=kept)
    return routing, call_log, pending, clock


async def test_hangup_while_the_callers_lookup_still_runs_keeps_the_report_until_the_call_is_logged(tasks):
    crm, kept = HeldLookups(), MemoryKeptReports()
    routing, call_log, _, clock = kept_services(tasks, crm, kept)
    assert (await routing.route(ENTRY, "K1")).status is RoutingStatus.FALLBACK
    report = HangupReport("K1", "fallback", ENTRY, "NOANSWER", None, "", clock.at)
    ending = asyncio.create_task(call_log.call_ended(report))
    await asyncio.sleep(0.05)
    assert list(kept.reports) == ["K1"] and not ending.done()  # kept while the lookup runs
    crm.answer.set()
    record = await asyncio.wait_for(ending, 5)
    assert record.entity == crm.created["K1"].primary and crm.calls["K1"] == record
    assert kept.reports == {}  # logged: forgotten


async def test_hangup_of_a_call_whose_crm_work_is_done_writes_no_kept_report(tasks):
    crm, kept = MemoryCrm(), MemoryKeptReports()
    routing, call_log, pending, clock = kept_services(tasks, crm, kept)
    assert (await routing.route(ENTRY, "K2")).status is RoutingStatus.OK
    assert await pending.settle("K2", 1)  # the call talks for a while: its records are stored meanwhile
    await call_log.call_ended(HangupReport("K2", "ok", ENTRY, "NOANSWER", None, "", clock.at))
    assert "K2" in crm.calls and kept.writes == 0


async def test_reports_kept_by_an_earlier_run_are_logged_at_start_with_their_own_end(tasks):
    crm, kept = MemoryCrm(), MemoryKeptReports()
    ended = datetime(2026, 11, 27, 18, 30, tzinfo=timezone.utc)
    kept.reports["K3"] = (HangupReport("K3", "fallback", ENTRY, "NOANSWER", None, "", ended - timedelta(seconds=20)),
                          ended)
    _, call_log, pending, _ = kept_services(tasks, crm, kept)  # a new run: routing never saw K3
    assert await call_log.log_kept_reports() == 1
    assert await pending.settle("call-end:K3", 5)
    assert crm.calls["K3"].ended_at == ended and crm.calls["K3"].entity == crm.created["K3"].primary
    assert kept.reports == {}


async def test_a_report_stays_kept_until_the_calls_records_are_stored_even_once_its_log_is(tasks):
    """The call's lookup outlasts the hangup's wait for it (settle_timeout): the call is logged
    meanwhile, and its report is kept until the records are stored too."""
    crm, kept = HeldLookups(), MemoryKeptReports()
    routing, call_log, _, clock = kept_services(tasks, crm, kept, settle_timeout=0.05)
    await routing.route(ENTRY, "K4")
    ending = asyncio.create_task(call_log.call_ended(HangupReport("K4", "fallback", ENTRY, "NOANSWER", None, "",
                                                                  clock.at)))
    await asyncio.sleep(0.3)
    assert "K4" in crm.calls and "K4" not in crm.created  # logged; the records only in memory
    assert list(kept.reports) == ["K4"] and not ending.done()
    crm.answer.set()
    await asyncio.wait_for(ending, 5)
    assert "K4" in crm.created and kept.reports == {}


async def test_a_kept_report_logged_at_start_while_the_crm_is_still_down_still_gets_its_lead(tasks):
    """The restart comes before the CRM answers again: the lookup is given up, and the new
    caller's records are submitted all the same (their delivery looks before it creates)."""
    crm, kept = DownCrm(), MemoryKeptReports()
    kept.reports["K5"] = (HangupReport("K5", "fallback", ENTRY, "NOANSWER", None, "", None),
                          datetime(2026, 11, 27, 18, 30, tzinfo=timezone.utc))
    _, call_log, pending, _ = kept_services(tasks, crm, kept)
    assert await call_log.log_kept_reports() == 1
    assert await pending.settle("call-end:K5", 5)
    assert "K5" in crm.created and crm.calls["K5"].entity == crm.created["K5"].primary
    assert kept.reports == {}


class DownCrm(MemoryCrm):
    """Every lookup fails (the CRM is unreachable); commands are still taken (the outbox)."""

    async def find_by_phone(self, phone):
        raise CrmUnavailable("down for the test")


async def test_a_report_being_logged_is_not_logged_twice_and_one_left_behind_is_found_in_a_while(tasks):
    """The periodic look for kept reports skips those a hangup is logging; a report that shows
    up later (a daemon of the same store stopped) is logged at the next round."""
    crm, kept = HeldLookups(), MemoryKeptReports()
    routing, call_log, pending, clock = kept_services(tasks, crm, kept)
    await routing.route(ENTRY, "K6")
    ending = pending.start("call-end:K6", call_log.call_ended(  # as the hangup route starts it
        HangupReport("K6", "fallback", ENTRY, "NOANSWER", None, "", clock.at)))
    await asyncio.sleep(0.05)
    assert list(kept.reports) == ["K6"] and await call_log.log_kept_reports() == 0  # K6's hangup logs it
    looking = asyncio.create_task(call_log.keep_logging_kept_reports(every=0.05))
    try:
        kept.reports["K7"] = (HangupReport("K7", "fallback", ENTRY, "NOANSWER", None, "", None), clock.at)
        crm.answer.set()
        await asyncio.wait_for(ending, 5)
        for _ in range(100):
            if not kept.reports:
                break
            await asyncio.sleep(0.05)
        assert kept.reports == {} and crm.calls["K7"].entity == crm.created["K6"].primary  # same caller: joined
        assert len([key for key in crm.keys if key.startswith("K6/")]) == 2  # K6: its records and one log
    finally:
        looking.cancel()
