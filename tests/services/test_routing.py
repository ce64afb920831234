"""The routing and call-log use cases on a real SQLite CRM: deadlines, retries, exclusions."""
import asyncio
import time
from datetime import timedelta

import pytest

from agi_daemon.asterisk.routes.call_end import hangup_report
from agi_daemon.core.decisions import RoutingStatus
from agi_daemon.core.model import CreateFor, Direction, UnknownCaller
from agi_daemon.core.rules import CallEntry
from agi_daemon.services import routing as routing_module
from agi_daemon.services.call_log import CallLogService
from agi_daemon.services.pending import PendingWork
from agi_daemon.services.routed_calls import RoutedCalls
from agi_daemon.services.routing import RoutingService
from tests.fakes.clock import FixedClock
from tests.fakes.crm import FlakyCrm, MemoryCrm, SlowCrm, UntouchableCrm, commands_for
from tests.fakes.rules import ALICE_MOBILE, CLIENT, make_rules


def incoming(line, caller):
    return CallEntry(Direction.INCOMING, line, caller)


def outgoing(extension, number):
    return CallEntry(Direction.OUTGOING, number, extension)


@pytest.fixture
def store(crm):
    """The real embedded CRM (tests/conftest.py), named apart from the fakes wrapping it."""
    return crm


@pytest.fixture
async def tasks():
    async with asyncio.TaskGroup() as group:
        yield group


def services(crm, tasks, rules=None, deadline=0.3):
    rules = rules or make_rules()
    pending = PendingWork(tasks.create_task)
    clock = FixedClock()
    routed = RoutedCalls()
    commands = commands_for(crm)
    routing = RoutingService(lambda: rules, crm, clock, pending, commands=commands, deadline=deadline, routed=routed,
                             retry_delays=(0.01, 0.01))
    call_log = CallLogService(lambda: rules, crm, clock, pending, commands=commands, routed=routed, settle_timeout=5)
    return routing, call_log, pending, clock


async def test_unknown_caller_is_routed_then_gets_a_lead_for_the_queue_head(store, tasks):
    routing, _, pending, _ = services(store, tasks)
    decision = await routing.route(incoming("0184880000", "0611223344"), "L1")
    assert decision.status is RoutingStatus.OK
    assert await pending.settle("L1", 5)
    [lead] = await store.list_records("leads")
    assert (lead["phones"], lead["responsible"], lead["source"], lead["created_by_call"]) == ([CLIENT], "alice", "CALL", "L1")


async def test_slow_crm_routes_to_queue_group_within_the_deadline_and_creates_afterwards(store, tasks):
    routing, _, pending, _ = services(SlowCrm(store, delay=1.0), tasks, deadline=0.2)
    started = time.monotonic()
    decision = await routing.route(incoming("0184880000", "0611223344"), "L2")
    elapsed = time.monotonic() - started
    assert decision.status is RoutingStatus.FALLBACK
    assert decision.route.queue_group == "sales" and decision.route.responsible is None
    assert elapsed < 0.2 + 0.1
    assert await store.list_records("leads") == []
    assert await pending.settle("L2", 5)
    assert len(await store.list_records("leads")) == 1


async def test_failing_lookup_falls_back_and_creates_once_the_crm_is_back(store, tasks):
    routing, _, pending, _ = services(FlakyCrm(store, failures=2), tasks)
    decision = await routing.route(incoming("0184880000", "0611223344"), "L3")
    assert decision.status is RoutingStatus.FALLBACK
    assert await pending.settle("L3", 5)
    assert len(await store.list_records("leads")) == 1


async def test_crm_down_past_every_lookup_retry_still_creates_the_new_callers_lead(store, tasks):
    """A long outage: the lookup and its retries all fail. The call was routed to the queue
    group; its lead is submitted all the same and exists once the store takes it."""
    routing, _, pending, _ = services(FlakyCrm(store, failures=10), tasks)
    decision = await routing.route(incoming("0184880000", "0611223344"), "L4")
    assert decision.status is RoutingStatus.FALLBACK
    assert await pending.settle("L4", 5)
    [lead] = await store.list_records("leads")
    assert lead["created_by_call"] == "L4"


async def test_known_client_whose_lookup_never_answered_is_joined_not_doubled(store, tasks):
    """The same outage for a known client: what the call submits joins the client the CRM
    has, and creates nothing."""
    await store.add_record("contact", "Client SA", CLIENT, "bob")
    routing, _, pending, _ = services(FlakyCrm(store, failures=10), tasks)
    await routing.route(incoming("0184880000", CLIENT), "L5")
    assert await pending.settle("L5", 5)
    assert await store.list_records("leads") == [] and len(await store.list_records("contacts")) == 1


@pytest.mark.parametrize("caller", ["+33 1 40 00 00 00", ALICE_MOBILE])
async def test_excluded_caller_is_routed_without_touching_the_crm(tasks, caller):
    crm = UntouchableCrm()
    routing, call_log, _, _ = services(crm, tasks)
    decision = await routing.route(incoming("0184880000", caller), "L4")
    assert decision.status is RoutingStatus.EXCLUDED and decision.route.queue_targets
    assert await call_log.call_ended(hangup_report({"linkedid": "L4", "status": "excluded", "direction": "incoming", "exten": "0184880000", "callerid": caller, "dialstatus": "ANSWER"})) is None
    assert crm.calls == []


async def test_offer_creates_nothing_and_records_the_offer(store, tasks):
    routing, _, pending, _ = services(store, tasks, make_rules(unknown_caller=UnknownCaller.OFFER))
    await routing.route(incoming("0184880000", "0611223344"), "L5")
    assert await pending.settle("L5", 5)
    assert await store.list_records("leads") == []
    [offer] = await store.list_records("offers")
    assert (offer["linkedid"], offer["phone"], offer["employees"]) == ("L5", CLIENT, ["alice", "bob"])


async def test_call_end_logs_the_call_on_the_lead_the_call_created(store, tasks):
    routing, call_log, pending, clock = services(SlowCrm(store, delay=0.5), tasks, deadline=0.1)
    t0 = clock.at.timestamp()
    await routing.route(incoming("0184880000", "0611223344"), "L6")
    clock.at += timedelta(seconds=42)
    # the hangup arrives while the lead is still being created: the log waits for it
    record = await call_log.call_ended(hangup_report({
        "linkedid": "L6", "status": "fallback", "direction": "incoming", "exten": "0184880000",
        "callerid": "0611223344", "dialstatus": "ANSWER", "answered_ms": "30000",
        "peer": "102@employees", "t0": f"{t0:.3f}",
    }))
    [lead] = await store.list_records("leads")
    [call] = await store.list_records("calls")
    assert call["entity"] == f"lead:{lead['id']}"
    assert (call["disposition"], call["answered_by"], call["ring_seconds"], call["talk_seconds"]) == ("answered", "bob", 12.0, 30.0)
    assert record.linkedid == "L6"


async def test_outgoing_call_to_unknown_number_creates_lead_for_the_employee(store, tasks):
    routing, _, pending, _ = services(store, tasks, make_rules(create_for=CreateFor.OUTGOING))
    decision = await routing.route(outgoing("102", "06 11 22 33 44"), "L7")
    assert decision.route.trunk_target == "Local/+33611223344@trunk"
    assert await pending.settle("L7", 5)
    [lead] = await store.list_records("leads")
    assert lead["responsible"] == "bob"


class CountingDecide:
    """The real core `decide`, counting its calls per linkedid."""

    def __init__(self, real):
        self.real = real
        self.calls: list[str] = []

    def __call__(self, rules, call, screening, lookup):
        self.calls.append(call.linkedid)
        return self.real(rules, call, screening, lookup)


@pytest.mark.parametrize("delay, status", [(0.0, RoutingStatus.OK), (0.5, RoutingStatus.FALLBACK)], ids=["on-time", "late"])
async def test_each_call_is_decided_once_whether_the_lookup_is_on_time_or_late(tasks, monkeypatch, delay, status):
    counting = CountingDecide(routing_module.decide)
    monkeypatch.setattr(routing_module, "decide", counting)
    crm = MemoryCrm()
    routing, _, pending, _ = services(SlowCrm(crm, delay=delay) if delay else crm, tasks, deadline=0.1)
    decision = await routing.route(incoming("0184880000", "0611223344"), "L8")
    assert await pending.settle("L8", 5)
    assert decision.status is status
    assert counting.calls == ["L8"]
    assert crm.lookups == [CLIENT]
    assert list(crm.created) == ["L8"]  # late or not, the CRM work created the lead
