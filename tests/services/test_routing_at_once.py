"""Routing with a CRM that answers the lookup at once (the embedded store's read on the event
loop): a known client is decided without any CRM work left running; a new caller still has
its records durable before routing answers; a CRM that cannot answer at once is asked the
usual way, within the deadline."""
import asyncio

import pytest

from agi_daemon.core.decisions import RoutingStatus
from agi_daemon.core.model import Direction
from agi_daemon.core.ports import ImmediateLookup, WouldWait
from agi_daemon.core.rules import CallEntry
from agi_daemon.services.pending import PendingWork
from agi_daemon.services.routed_calls import RoutedCalls
from agi_daemon.services.routing import RoutingService
from tests.fakes.clock import FixedClock
from tests.fakes.crm import commands_for
from tests.fakes.rules import CLIENT, make_rules


@pytest.fixture
async def tasks():
    async with asyncio.TaskGroup() as group:
        yield group


def routing_on(crm, tasks):
    rules = make_rules()
    pending = PendingWork(tasks.create_task)
    routing = RoutingService(lambda: rules, crm, FixedClock(), pending, commands=commands_for(crm), deadline=0.3,
                             routed=RoutedCalls(), retry_delays=(0.01, 0.01))
    return routing, pending


class NeverAtOnce:
    """The real store, whose immediate lookup always says it would have to wait."""

    def __init__(self, real) -> None:
        self.real = real
        self.asked = 0

    def find_by_phone_now(self, phone):
        raise WouldWait("held for the test")

    async def find_by_phone(self, phone):
        self.asked += 1
        return await self.real.find_by_phone(phone)

    def __getattr__(self, name):
        return getattr(self.real, name)


async def test_known_client_answered_at_once_goes_to_the_responsible_with_no_crm_work_left_running(crm, tasks):
    assert isinstance(crm, ImmediateLookup)
    await crm.add_record("contact", "Client SA", CLIENT, "bob")
    routing, pending = routing_on(crm, tasks)
    decision = await routing.route(CallEntry(Direction.INCOMING, "0184880000", CLIENT), "A1")
    assert decision.status is RoutingStatus.OK and decision.route.responsible == "bob"
    assert pending.in_flight == 0  # nothing to create: no task was started for the call


async def test_new_caller_answered_at_once_has_its_lead_before_routing_answers(crm, tasks):
    routing, pending = routing_on(crm, tasks)
    decision = await routing.route(CallEntry(Direction.INCOMING, "0184880000", "0611223344"), "A2")
    assert decision.status is RoutingStatus.OK
    [lead] = await crm.list_records("leads")  # durable before the answer, not after
    assert (lead["created_by_call"], lead["responsible"]) == ("A2", "alice")
    assert await pending.settle("A2", 5)


async def test_store_that_cannot_answer_at_once_is_asked_the_usual_way(crm, tasks):
    await crm.add_record("contact", "Client SA", CLIENT, "bob")
    held = NeverAtOnce(crm)
    routing, _ = routing_on(held, tasks)
    decision = await routing.route(CallEntry(Direction.INCOMING, "0184880000", CLIENT), "A3")
    assert decision.status is RoutingStatus.OK and decision.route.responsible == "bob"
    assert held.asked == 1
