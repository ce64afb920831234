"""`agi-daemon simulate`: the decision and rule trace for one call, with no side effects.

The call goes through `RoutingService.route` itself, in dry-run mode (it looks the number up
but creates nothing), so what `simulate` shows is what routing does: there is no second copy
of the routing path to drift from it. Only the arguments are checked here first, the way an
admin would expect from a command line: a line or an extension the config does not have is
refused with the ones it has.
"""
from __future__ import annotations

import asyncio
from typing import Any

from .core.decisions import CreateRecords, Decision, MakeOffer, Route, RoutingStatus, display_name
from .core.model import CrmMode, Direction, QueueStrategy, Rules
from .core.phone import try_e164
from .core.commands import CallLedger, CrmCommand
from .core.ports import CrmLookup
from .core.rules import CallEntry, CallFacts, identify
from .services.clock import SystemClock
from .services.pending import PendingWork
from .services.routed_calls import RoutedCalls
from .services.routing import RoutingService

SIMULATED_LINKEDID = "simulated"
LOOKUP_SECONDS = 30.0  # simulate shows the decision with the CRM's answer, however slow it is


class Refused(Exception):
    """The arguments cannot describe a call of this config; `usage` when they are incomplete
    (exit status 2, as for any command line usage error), else exit status 1."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def call_entry(rules: Rules, direction: Direction, *, line: str | None, caller: str, callee: str | None) -> CallEntry:
    """The call the arguments describe, as the dialplan would hand it to routing.

    incoming: --line is the line called (EXTEN), --caller the client. outgoing: --caller is
    the employee's extension, --callee the number dialled; the line is the employee's own
    (or the first line), as for a real call: --line may only confirm it."""
    if direction is Direction.INCOMING:
        if not line:
            raise Refused("--direction incoming needs --line (the number called)", usage=True)
        if callee:
            raise Refused("--callee is for outgoing calls; an incoming call has --line and --caller", usage=True)
        entry = CallEntry(direction, line, caller)
        if not isinstance(identify(rules, entry, SIMULATED_LINKEDID), CallFacts):
            raise Refused(f"line {line!r} is not among the numbers of the config; its lines: {_lines(rules)}")
        return entry
    if not callee:
        raise Refused("--direction outgoing needs --callee (the number dialled)", usage=True)
    employee = rules.employee_by_extension(caller)
    if employee is None:
        raise Refused(f"--caller {caller!r} is not an employee's extension; the extensions: {_extensions(rules)}")
    entry = CallEntry(direction, callee, caller)
    facts = identify(rules, entry, SIMULATED_LINKEDID)
    if not isinstance(facts, CallFacts):
        raise Refused("the config has no line for outgoing calls")
    if line:
        wanted = try_e164(line, rules.default_region)
        if wanted is None or wanted not in rules.lines:
            raise Refused(f"line {line!r} is not among the numbers of the config; its lines: {_lines(rules)}")
        if wanted != facts.line.number:
            raise Refused(
                f"an outgoing call from {caller} ({employee.id}) goes out on line {display_name(facts.line.number)}"
                f" ({facts.line.name}), not {display_name(wanted)}: the line of an outgoing call is the"
                f" employee's `line` in the config (or the first line); leave out --line")
    return entry


def _lines(rules: Rules) -> str:
    return ", ".join(f"{display_name(line.number)} ({line.name})" for line in rules.lines.values()) or "none"


def _extensions(rules: Rules) -> str:
    known = [f"{e.extension} ({e.id})" for e in rules.employees.values() if e.extension]
    return ", ".join(known) or "none"


class NothingSubmitted:
    """The outbox of a dry run: routing never submits there (a bug if it did)."""

    async def submit(self, command: CrmCommand) -> None:
        raise AssertionError(f"a simulation submitted {type(command).__name__}")

    async def ledger(self, linkedid: str) -> CallLedger:
        return CallLedger(linkedid)


async def simulate(rules: Rules, crm: CrmLookup, entry: CallEntry) -> Decision:
    """The decision routing makes for the call `entry`, without creating anything."""
    async with asyncio.TaskGroup() as tasks:
        pending = PendingWork(tasks.create_task)
        routing = RoutingService(lambda: rules, crm, SystemClock(), pending,
                                 commands=NothingSubmitted(), deadline=LOOKUP_SECONDS, routed=RoutedCalls(),
                                 dry_run=True)
        decision = await routing.route(entry, SIMULATED_LINKEDID)
        # The decision is made: what routing would still do in the background (retrying a
        # failed lookup for the records it would create) is not wanted from a dry run.
        await pending.drain(0)
    return decision


# ---------------------------------------------------------------------------- output


def decision_json(decision: Decision) -> dict[str, Any]:
    action: dict[str, Any] | None = None
    if isinstance(decision.crm_action, CreateRecords):
        plan = decision.crm_action.plan
        action = {"create": {
            "mode": plan.mode.value, "phone": plan.phone, "name": plan.name, "source": plan.source,
            "responsible": plan.responsible, "linkedid": plan.linkedid, "line": plan.line,
            "direction": plan.direction.value, "pipeline": plan.pipeline, "create_with": plan.create_with.value,
        }}
    elif isinstance(decision.crm_action, MakeOffer):
        action = {"offer": {"employees": list(decision.crm_action.employees)}}
    return {
        "status": decision.status.value,
        "line": None if decision.line is None else {"number": decision.line.number, "name": decision.line.name},
        "route": None if decision.route is None else _route_json(decision.route),
        "crm_action": action,
        "known": None if decision.match is None else {"entity": str(decision.match.entity), "responsible": decision.match.responsible},
        "trace": [{"rule": s.rule, "fired": s.fired, "reason": s.reason} for s in decision.trace],
    }


def _route_json(route: Route) -> dict[str, Any]:
    return {
        "queue_group": route.queue_group, "queue_targets": list(route.queue_targets),
        "queue_members": list(route.queue_members), "queue_ring": route.queue_ring,
        "strategy": route.strategy.value, "responsible": route.responsible,
        "responsible_target": route.responsible_target, "responsible_ring": route.responsible_ring,
        "trunk_target": route.trunk_target,
    }


def decision_text(decision: Decision) -> str:
    """What an admin reads: plain words, no Python values."""
    lines = [f"status: {decision.status.value}"]
    if decision.line is not None:
        lines.append(f"line: {display_name(decision.line.number)} ({decision.line.name})")
    route = decision.route
    if route is not None:
        if route.trunk_target:
            lines.append(f"dial: {route.trunk_target}")
        if route.responsible_target:
            lines.append(f"ring first: {route.responsible} ({route.responsible_target}) for {route.responsible_ring} s")
        if route.queue_group:
            lead = "then queue group" if route.responsible_target else "ring queue group"
            lines.append(f"{lead} {route.queue_group}: {_queue_text(route)}")
    if decision.match is not None:
        lines.append(f"known client: {decision.match.entity} (responsible: {decision.match.responsible or 'none'})")
    lines.append(f"CRM: {_action_text(decision)}")
    lines.append("trace:")
    lines += [f"  {'✓' if s.fired else '·'} {s.rule}: {s.reason}" for s in decision.trace]
    return "\n".join(lines)


def _queue_text(route: Route) -> str:
    if not route.queue_targets:
        return "nobody to ring (no member has an extension)"
    if route.strategy is QueueStrategy.IN_ORDER:
        return f"{' then '.join(route.queue_targets)}, {route.queue_ring} s each (in_order)"
    return f"{' and '.join(route.queue_targets)} together for {route.queue_ring} s (ring_all)"


def _action_text(decision: Decision) -> str:
    action = decision.crm_action
    if isinstance(action, CreateRecords):
        plan = action.plan
        if plan.mode is CrmMode.CLASSIC:
            what = "a lead"
        else:
            what = f"a deal in pipeline {plan.pipeline} with a {plan.create_with.value} (and a lead converted at once)"
        return f"create {what} for {display_name(plan.phone)}, source {plan.source}, responsible {plan.responsible or 'none'}"
    if isinstance(action, MakeOffer):
        return f"create nothing; the call window offers to create a lead or contact to {', '.join(action.employees) or 'nobody'}"
    if decision.status is RoutingStatus.EXCLUDED:
        return "nothing: the CRM never hears of this call"
    if decision.match is not None:
        return f"create nothing; the call is logged on {decision.match.entity}"
    return "create nothing (see the trace)"
