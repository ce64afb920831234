"""Where a call goes and what the CRM gets from it: rules R1-R6, R9 and R11 as one pure function.

`decide()` takes the call's facts, the screening (R7/R8) and how the CRM lookup ended, and
returns the call's one Decision with the rule trace. The routing service performs it;
`simulate` prints it. What a new caller creates (the CRM action) is worked out once, when the
lookup answers (`answered`), whether or not routing still waits for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .model import CreateFor, CrmMode, Direction, Line, Match, QueueStrategy, RecordPlan, Rules, UnknownCaller
from .phone import readable
from .rules import CallFacts, CrmAccess, Screening, TraceStep


class RoutingStatus(StrEnum):
    OK = "ok"  # decided with the CRM's answer
    FALLBACK = "fallback"  # the CRM was too slow or failing: queue group now, CRM work afterwards
    EXCLUDED = "excluded"  # exception list or employee number: routed, nothing sent to the CRM
    ERROR = "error"  # no decision possible (unknown line...): the dialplan falls back


class LookupOutcome(StrEnum):
    ANSWERED = "answered"  # the CRM answered within the deadline (match may be None: unknown)
    LATE = "late"  # the deadline passed first
    FAILED = "failed"  # the CRM answered with an error
    NOT_ASKED = "not_asked"  # screening forbade the lookup


@dataclass(frozen=True)
class Route:
    """What the dialplan dials: the responsible first (R6), then the queue group; or the trunk."""

    queue_group: str | None = None
    queue_targets: tuple[str, ...] = ()
    queue_members: tuple[str, ...] = ()  # the employee ids behind queue_targets, in order
    queue_ring: int = 0
    strategy: QueueStrategy = QueueStrategy.IN_ORDER
    responsible: str | None = None  # employee id rung first
    responsible_target: str | None = None
    responsible_ring: int = 0
    trunk_target: str | None = None


@dataclass(frozen=True)
class CreateRecords:
    plan: RecordPlan


@dataclass(frozen=True)
class MakeOffer:
    employees: tuple[str, ...]  # who sees "create lead / contact" in their call window


CrmAction = CreateRecords | MakeOffer | None


@dataclass(frozen=True)
class Lookup:
    """How the CRM lookup of a call ended and, when it answered, what that means for the CRM
    (R1, R3-R5, R9-R12): built by `answered`; else one of NOT_ASKED, LATE, FAILED."""

    outcome: LookupOutcome
    match: Match | None = None
    action: CrmAction = None
    action_trace: tuple[TraceStep, ...] = ()


def answered(rules: Rules, call: CallFacts, match: Match | None) -> Lookup:
    """The lookup answered `match` (None: a new client): what the call creates in the CRM."""
    action, steps = crm_action_for(rules, call, match)
    return Lookup(LookupOutcome.ANSWERED, match, action, steps)


NOT_ASKED = Lookup(LookupOutcome.NOT_ASKED)
LATE = Lookup(LookupOutcome.LATE)
FAILED = Lookup(LookupOutcome.FAILED)


@dataclass(frozen=True)
class Decision:
    status: RoutingStatus
    route: Route | None
    crm_action: CrmAction
    match: Match | None
    trace: tuple[TraceStep, ...]
    line: Line | None = None  # the line the call was identified on (None: unknown line)


def decide(rules: Rules, call: CallFacts, screening: Screening, lookup: Lookup) -> Decision:
    """The whole decision for a call whose lookup ended as `lookup`."""
    trace = [*call.trace, *screening.trace]
    outcome = lookup.outcome
    match = lookup.match if outcome is LookupOutcome.ANSWERED else None
    if outcome is LookupOutcome.LATE:
        trace.append(TraceStep("deadline", True, "the CRM did not answer within crm_deadline_ms: queue group now, CRM work afterwards"))
    elif outcome is LookupOutcome.FAILED:
        trace.append(TraceStep("deadline", True, "the CRM lookup failed: queue group now, CRM work retried afterwards"))
    elif outcome is LookupOutcome.ANSWERED:
        trace.append(_known_step(match))

    route, route_steps = route_for(rules, call, match)
    trace.extend(route_steps)

    action: CrmAction = None
    if screening.access is CrmAccess.ALLOWED and outcome is LookupOutcome.ANSWERED:
        action = lookup.action
        trace.extend(lookup.action_trace)

    if screening.access is CrmAccess.EXCLUDED:
        status = RoutingStatus.EXCLUDED
    elif outcome in (LookupOutcome.LATE, LookupOutcome.FAILED):
        status = RoutingStatus.FALLBACK
    else:
        status = RoutingStatus.OK
    return Decision(status, route, action, match, tuple(trace), call.line)


def _known_step(match: Match | None) -> TraceStep:
    if match is None:
        return TraceStep("known", False, "the number is not in the CRM: new client")
    return TraceStep("known", True, f"the number belongs to {match.entity} (responsible: {match.responsible or 'none'})")


def route_for(rules: Rules, call: CallFacts, match: Match | None) -> tuple[Route, tuple[TraceStep, ...]]:
    """Incoming: the responsible of a known client first when the line says so (R6), then the
    line's queue group. Outgoing: the trunk."""
    if call.direction is Direction.OUTGOING:
        number = call.external or "".join(ch for ch in call.external_text if ch.isdigit() or ch == "+")
        trunk = rules.dialing.trunk_template.format(number=number)
        return Route(trunk_target=trunk), (TraceStep("trunk", True, f"outgoing call dialled through {trunk.split('/')[0]}"),)

    group = rules.queue_groups[call.line.queue_group]
    reachable = [(member, endpoint) for member in group.members if (endpoint := _endpoint(rules, member))]
    targets = tuple(endpoint for _, endpoint in reachable)
    members = tuple(member for member, _ in reachable)
    route = Route(group.id, targets, members, group.ring_seconds, group.strategy)
    steps: list[TraceStep] = []
    crm = call.line.crm
    if match is None:
        pass
    elif not crm.route_known_to_responsible:
        steps.append(TraceStep("R6", False, "route_known_to_responsible is off for this line"))
    elif match.responsible is None or match.responsible not in rules.employees:
        steps.append(TraceStep("R6", False, f"the record's responsible {match.responsible or '(none)'} is not an employee of the config: queue group"))
    elif (target := _endpoint(rules, match.responsible)) is None:
        steps.append(TraceStep("R6", False, f"responsible {match.responsible} has no extension: queue group"))
    else:
        route = Route(group.id, targets, members, group.ring_seconds, group.strategy,
                      match.responsible, target, crm.responsible_ring_seconds)
        steps.append(TraceStep("R6", True, f"known client: ring responsible {match.responsible} for {crm.responsible_ring_seconds} s, then queue group {group.id}"))
    if route.responsible is None:
        steps.append(TraceStep("queue", True, f"ring queue group {group.id} ({group.strategy.value}, {group.ring_seconds} s)"))
    return route, tuple(steps)


def _endpoint(rules: Rules, employee_id: str) -> str | None:
    employee = rules.employees.get(employee_id)
    if employee is None or not employee.extension:
        return None
    return rules.dialing.endpoint_template.format(extension=employee.extension)


def crm_action_for(rules: Rules, call: CallFacts, match: Match | None) -> tuple[CrmAction, tuple[TraceStep, ...]]:
    """What a call from a number the CRM has screened in creates (R3, R4, R1, R11, R5, R9)."""
    if match is not None:
        return None, (
            TraceStep("R12", True, f"known client: the call is logged on {match.entity}, nothing created"),
            TraceStep("R10", False, "known client: a manual transfer never changes the responsible"),
        )
    crm = call.line.crm
    allowed = crm.create_for is CreateFor.ALL or crm.create_for.value == call.direction.value
    if not allowed:
        return None, (TraceStep("R4", False, f"create_for is {crm.create_for.value}: an {call.direction.value} call creates nothing"),)
    steps = [TraceStep("R4", True, f"create_for {crm.create_for.value} allows {call.direction.value} calls to create records")]
    responsible, why = _responsible_for_new_records(rules, call)
    if crm.unknown_caller is UnknownCaller.OFFER:
        employees = _offer_audience(rules, call)
        steps.append(TraceStep("R3", True, f"unknown_caller is offer: nothing created, the call window offers to create a lead or contact to {', '.join(employees) or 'nobody'}"))
        return MakeOffer(employees), tuple(steps)
    steps.append(TraceStep("R3", True, "unknown_caller is create: records are created at the moment of the call"))
    policy = rules.crm
    if policy.mode is CrmMode.CLASSIC:
        steps.append(TraceStep("R1", True, "classic mode: a lead is created"))
    else:
        steps.append(TraceStep("R1", True, f"simple mode: a deal and a {policy.create_with.value} are created, the lead is converted at once"))
        steps.append(TraceStep("R11", True, f"the deal goes to pipeline {policy.pipeline}"))
    steps.append(TraceStep("R5", True, f"source {crm.source}"))
    steps.append(TraceStep("R9", True, why))
    logged_on = "lead" if policy.mode is CrmMode.CLASSIC else "deal"
    steps.append(TraceStep("R12", True, f"the call is logged on the new {logged_on}"))
    if crm.reassign_on_manual_transfer:
        steps.append(TraceStep("R10", True, "a manual transfer gives the new records to the transfer target"))
    else:
        steps.append(TraceStep("R10", False, "reassign_on_manual_transfer is off: the records keep their responsible"))
    assert call.external is not None  # screening ALLOWED implies a readable number
    plan = RecordPlan(
        mode=policy.mode,
        phone=call.external,
        name=display_name(call.external),
        source=crm.source,
        responsible=responsible,
        linkedid=call.linkedid,
        line=call.line.number,
        direction=call.direction,
        pipeline=policy.pipeline,
        create_with=policy.create_with,
    )
    return CreateRecords(plan), tuple(steps)


def _responsible_for_new_records(rules: Rules, call: CallFacts) -> tuple[str | None, str]:
    if call.direction is Direction.OUTGOING:
        if call.employee is None:
            return None, "the calling extension is not an employee: the records have no responsible"
        return call.employee.id, f"responsible is the calling employee {call.employee.id}"
    group = rules.queue_groups[call.line.queue_group]
    head = group.members[0] if group.members else None
    return head, f"responsible is {head}, first member of queue group {group.id}"


def _offer_audience(rules: Rules, call: CallFacts) -> tuple[str, ...]:
    if call.direction is Direction.OUTGOING:
        return (call.employee.id,) if call.employee else ()
    return rules.queue_groups[call.line.queue_group].members


def display_name(e164: str) -> str:
    """How a record created from a call is named until someone edits it: the number, readable
    (from the number as the call's screening read it, when it is at hand)."""
    return readable(e164)
