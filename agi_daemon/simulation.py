"""`agi-daemon simulate`: the decision and rule trace for one call, with no side effects."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .core.decisions import CreateRecords, Decision, LookupOutcome, MakeOffer, RoutingStatus, decide
from .core.model import Match, Rules
from .core.rules import CallFacts, CrmAccess, UnknownLine, identify_incoming, identify_outgoing, screen


def identify(rules: Rules, direction: str, line: str, caller: str, callee: str | None) -> CallFacts | UnknownLine:
    """incoming: --line is the line, --caller the client. outgoing: --caller is the employee's
    extension, --callee the dialled number; the line is the employee's (or the first line),
    as for a real call."""
    if direction == "incoming":
        return identify_incoming(rules, line, caller, "simulated")
    return identify_outgoing(rules, caller, callee or "", "simulated")


def simulate(rules: Rules, call: CallFacts | UnknownLine, match: Match | None) -> Decision:
    if isinstance(call, UnknownLine):
        return Decision(RoutingStatus.ERROR, None, None, None, call.trace)
    screening = screen(rules, call)
    lookup = LookupOutcome.ANSWERED if screening.access is CrmAccess.ALLOWED else LookupOutcome.NOT_ASKED
    return decide(rules, call, screening, lookup, match)


def decision_json(decision: Decision) -> dict[str, Any]:
    action: dict[str, Any] | None = None
    if isinstance(decision.crm_action, CreateRecords):
        action = {"create": {k: str(v) if not isinstance(v, (str, type(None))) else v for k, v in asdict(decision.crm_action.plan).items()}}
    elif isinstance(decision.crm_action, MakeOffer):
        action = {"offer": {"employees": list(decision.crm_action.employees)}}
    route = None
    if decision.route is not None:
        route = {k: (list(v) if isinstance(v, tuple) else (v.value if hasattr(v, "value") else v)) for k, v in asdict(decision.route).items()}
    return {
        "status": decision.status.value,
        "route": route,
        "crm_action": action,
        "known": None if decision.match is None else {"entity": str(decision.match.entity), "responsible": decision.match.responsible},
        "trace": [{"rule": s.rule, "fired": s.fired, "reason": s.reason} for s in decision.trace],
    }


def decision_text(decision: Decision) -> str:
    data = decision_json(decision)
    lines = [f"status: {data['status']}"]
    route = decision.route
    if route is not None:
        if route.trunk_target:
            lines.append(f"dial: {route.trunk_target}")
        if route.responsible_target:
            lines.append(f"ring first: {route.responsible} ({route.responsible_target}) for {route.responsible_ring} s")
        if route.queue_group:
            lines.append(f"then queue group {route.queue_group}: {' & '.join(route.queue_targets)} ({route.strategy.value}, {route.queue_ring} s)")
    if data["crm_action"]:
        lines.append(f"CRM: {data['crm_action']}")
    lines.append("trace:")
    lines += [f"  {'✓' if s.fired else '·'} {s.rule}: {s.reason}" for s in decision.trace]
    return "\n".join(lines)
