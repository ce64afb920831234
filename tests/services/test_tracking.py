"""R10 and R12 from call tracking, without the Asterisk sandbox: the AMI events of real calls
(recorded from Asterisk 22, tests/fixtures/ami) through TrackingService, the reassign and
call-log services, on a hand-written in-memory CRM."""
from __future__ import annotations

import asyncio
import json

import pytest

from agi_daemon.asterisk.ami.translate import translate
from agi_daemon.core.commands import (
    CallLedger, ChangeResponsible, CreateCallRecords, CrmCommand, LogCall, RecordOffer,
)
from agi_daemon.core.model import Direction, EntityType, Transfer, TransferKind
from agi_daemon.core.rules import CallEntry
from agi_daemon.services.call_log import CallLogService
from agi_daemon.services.pending import PendingWork
from agi_daemon.services.reassign import ReassignService
from agi_daemon.services.routed_calls import RoutedCalls
from agi_daemon.services.routing import RoutingService
from agi_daemon.services.tracking import TrackingService
from tests.fakes.clock import FixedClock
from tests.fakes.crm import MemoryCrm, SlowCrm, commands_for
from tests.fakes.rules import CLIENT, make_rules, with_line_crm
from tests.fixtures import AMI_DIR, ami_items

TRANSFERS = {"incoming_blind_transfer": TransferKind.BLIND, "incoming_attended_transfer": TransferKind.ATTENDED}


@pytest.fixture
async def tasks():
    async with asyncio.TaskGroup() as group:
        yield group


def linkedid_of(name: str) -> str:
    return json.loads((AMI_DIR / f"{name}.json").read_text())[0]["fields"]["Linkedid"]


class Recorded:
    """The outbox the services submit to, recording every command submitted, in order."""

    def __init__(self, commands, submitted: list[CrmCommand]) -> None:
        self._commands = commands
        self.submitted = submitted

    async def submit(self, command: CrmCommand) -> None:
        self.submitted.append(command)
        await self._commands.submit(command)

    async def ledger(self, linkedid: str) -> CallLedger:
        return await self._commands.ledger(linkedid)


async def replay(tasks, crm, name: str, rules=None, deadline=1.0, submitted: list[CrmCommand] | None = None):
    """Route the recorded call as the dialplan would, then follow its AMI events; returns
    once every effect has been applied. `submitted` receives the commands the services submit."""
    rules = rules or make_rules()
    pending = PendingWork(tasks.create_task)
    routed = RoutedCalls()
    clock = FixedClock()
    commands = Recorded(commands_for(crm), [] if submitted is None else submitted)
    routing = RoutingService(lambda: rules, crm, clock, pending, commands=commands, deadline=deadline, routed=routed,
                             retry_delays=(0.01,))
    call_log = CallLogService(lambda: rules, crm, clock, pending, commands=commands, routed=routed, settle_timeout=5)
    reassign = ReassignService(lambda: rules, commands, pending, settle_timeout=5)
    tracking = TrackingService(lambda: rules, call_log, reassign, pending)
    linkedid = linkedid_of(name)
    await routing.route(CallEntry(Direction.INCOMING, "+33184880000", CLIENT), linkedid)
    for event in filter(None, map(translate, ami_items(name))):
        tracking.handle(event)
    assert await pending.settle(f"tracking:{linkedid}", 10) and await pending.settle(linkedid, 10)
    return linkedid


@pytest.mark.parametrize("name", TRANSFERS)
async def test_new_client_call_transferred_gives_its_lead_to_the_target_and_logs_the_transfer(tasks, name):
    crm = MemoryCrm()
    linkedid = await replay(tasks, crm, name)
    lead = crm.created[linkedid].lead
    assert crm.responsible[lead] == "bob"  # created for alice (queue head), moved to bob (R10)
    logged = crm.calls[linkedid]
    assert logged.entity == lead and logged.answered_by == "alice"
    assert logged.transfers == (Transfer("alice", "bob", TRANSFERS[name]),)


@pytest.mark.parametrize("name", TRANSFERS)
async def test_known_client_call_transferred_creates_nothing_and_submits_the_change_to_the_target(tasks, name):
    """At service level R10 is one command: the change of responsible of the records the call
    created, submitted whoever the caller is; the call of a known client created none, so its
    delivery changes nothing. That the delivery never moves a known client's records is the
    adapters' part, proven on the real ones by tests/crm/test_contract.py
    (test_responsible_change_moves_the_records_the_call_created_and_never_a_known_clients)."""
    crm = MemoryCrm()
    known = crm.add_known(CLIENT, EntityType.CONTACT, "alice")
    submitted: list[CrmCommand] = []
    linkedid = await replay(tasks, crm, name, submitted=submitted)
    [change] = [command for command in submitted if isinstance(command, ChangeResponsible)]
    assert (change.linkedid, change.phone, change.employee) == (linkedid, CLIENT, "bob")
    assert not [command for command in submitted if isinstance(command, (CreateCallRecords, RecordOffer))]
    assert crm.created == {}
    [log_call] = [command for command in submitted if isinstance(command, LogCall)]
    assert log_call.look_up == CLIENT and crm.calls[linkedid].entity == known.entity


async def test_transfer_on_a_line_without_reassign_keeps_the_responsible(tasks):
    crm = MemoryCrm()
    linkedid = await replay(tasks, crm, "incoming_blind_transfer", with_line_crm(make_rules(), reassign_on_manual_transfer=False))
    assert crm.responsible[crm.created[linkedid].lead] == "alice"


async def test_a_transfer_after_a_restart_mid_call_moves_the_records_even_back_to_an_earlier_target(tasks):
    """Each run numbers a call's transfers from its own start: after a restart, a transfer back
    to an employee of an earlier transfer is a change of its own, not one the outbox has seen."""
    crm, rules = MemoryCrm(), make_rules()
    linkedid = await replay(tasks, crm, "incoming_blind_transfer")  # transferred to bob
    lead = crm.created[linkedid].lead
    pending = PendingWork(tasks.create_task)
    for employee in ("carol", "bob"):  # each in a run of its own: the daemon restarted in between
        run = ReassignService(lambda: rules, crm, pending, settle_timeout=5)
        assert await run.transferred(linkedid, "+33184880000", employee, TransferKind.BLIND, CLIENT)
        assert crm.responsible[lead] == employee


async def test_transfer_while_the_lead_is_still_being_created_waits_for_it(tasks):
    crm = MemoryCrm()
    # routing gives up on the lookup after 50 ms: the call is answered, transferred and over
    # before the lead exists
    linkedid = await replay(tasks, SlowCrm(crm, delay=0.3), "incoming_blind_transfer", deadline=0.05)
    assert crm.responsible[crm.created[linkedid].lead] == "bob"
    assert crm.calls[linkedid].entity == crm.created[linkedid].lead


async def test_a_call_found_in_progress_at_a_resync_gets_back_the_offer_its_routing_made(tasks):
    """The daemon restarted mid-call: the call's routing (and its R3 offer) happened in the
    earlier run, so no OfferMade was published in this one. The call found at the resync gets
    its stored offer back on the call windows; a call routed in this run is not asked again."""
    from agi_daemon.core.live_calls import OfferMade
    from agi_daemon.core.model import Offer

    name = "incoming_blind_transfer_after_resync"
    items = list(filter(None, map(translate, ami_items(name))))
    linkedid = items[0].channels[0].channel.linkedid
    stored = Offer(linkedid, Direction.INCOMING, "+33184880000", CLIENT, ("alice", "bob"), FixedClock().now())
    asked: list[str] = []

    async def offers(wanted: str):
        asked.append(wanted)
        return stored if wanted == linkedid else None

    class Heard:
        def __init__(self) -> None:
            self.events = []

        def publish(self, event) -> None:
            self.events.append(event)

    heard, pending, crm = Heard(), PendingWork(tasks.create_task), MemoryCrm()
    rules = make_rules()
    call_log = CallLogService(lambda: rules, crm, FixedClock(), pending, commands=commands_for(crm), routed=RoutedCalls(),
                              settle_timeout=5)
    reassign = ReassignService(lambda: rules, commands_for(crm), pending, settle_timeout=5)
    tracking = TrackingService(lambda: rules, call_log, reassign, pending, notifier=heard, offers=offers)
    tracking.handle(items[0])  # the resync
    assert await pending.settle(f"offer:{linkedid}", 5)
    assert [e for e in heard.events if isinstance(e, OfferMade)] == [OfferMade(stored)]
    tracking.handle(items[0])  # a second resync finds the same call: known already, not asked again
    assert await pending.settle(f"offer:{linkedid}", 5)
    assert asked == [linkedid]
