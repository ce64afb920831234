"""How a finished call is recorded (R12), from what the dialplan reports at hangup and what
routing decided for the call."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .call_times import ring_and_talk
from .decisions import Route
from .model import CallRecord, Direction, Disposition, EntityRef, Rules
from .rules import CallEntry, CallFacts

_DISPOSITIONS = {
    "ANSWER": Disposition.ANSWERED,
    "BUSY": Disposition.BUSY,
    "NOANSWER": Disposition.MISSED,
    "CANCEL": Disposition.MISSED,  # the caller hung up while it rang
    "": Disposition.MISSED,  # the caller hung up before anyone was dialled
    "CHANUNAVAIL": Disposition.FAILED,
    "CONGESTION": Disposition.FAILED,
    "DONTCALL": Disposition.FAILED,
    "TORTURE": Disposition.FAILED,
    "INVALIDARGS": Disposition.FAILED,
}


@dataclass(frozen=True)
class HangupReport:
    """What the dialplan's hangup handler reports (variables.CALL_END_ARGS), as the edge read it:
    unreadable values are already None, never errors."""

    linkedid: str
    status: str  # the routing answer the dialplan acted on ("" when the daemon did not answer)
    entry: CallEntry  # how the call entered the daemon's dialplan
    dialstatus: str  # DIALSTATUS of the last Dial, upper case
    answered_seconds: float | None
    peer: str  # DIALEDPEERNUMBER: the dial target that answered
    started_at: datetime | None

    @property
    def direction(self) -> Direction:
        return self.entry.direction


def disposition_for(dialstatus: str) -> Disposition:
    return _DISPOSITIONS.get(dialstatus.upper(), Disposition.FAILED)


def employee_for_peer(rules: Rules, peer: str) -> str | None:
    """The employee whose dial target is DIALEDPEERNUMBER ("101", or "101@employees" for Local)."""
    if not peer:
        return None
    for employee in rules.employees.values():
        if not employee.extension:
            continue
        target = rules.dialing.endpoint_template.format(extension=employee.extension)
        if peer in (target, target.partition("/")[2]):
            return employee.id
    return None


def trunk_number(rules: Rules, dial_string: str) -> str | None:
    """The external number a Dial to the trunk carries ("0611223344@trunk" or
    "PJSIP/0611223344@trunk" for trunk_template "PJSIP/{number}@trunk"), else None."""
    template = rules.dialing.trunk_template
    forms = (template, template.partition("/")[2]) if "/" in template else (template,)
    for form in forms:
        prefix, _, suffix = form.partition("{number}")
        if dial_string.startswith(prefix) and dial_string.endswith(suffix) and len(dial_string) > len(prefix) + len(suffix):
            number = dial_string[len(prefix): len(dial_string) - len(suffix)]
            if number and not any(ch in number for ch in "/&@,"):
                return number
    return None


def call_record(
    rules: Rules,
    call: CallFacts,
    report: HangupReport,
    route: Route | None,
    entity: EntityRef | None,
    ended_at: datetime,
) -> CallRecord:
    """The R12 record: who was involved, who answered, and how long it rang and talked.

    `call` and `route` are what routing worked out and decided for the call; `route` is None
    when routing did not decide it (the daemon did not answer, or was restarted since): the
    employees involved are then only the one who answered. Never re-decided at hangup time:
    the rules may have been reloaded since."""
    disposition = disposition_for(report.dialstatus)
    started_at = min(report.started_at or ended_at, ended_at)
    talk = report.answered_seconds if disposition is Disposition.ANSWERED else None
    answered_at = max(started_at, ended_at - timedelta(seconds=talk)) if talk is not None else None
    ring_seconds, talk_seconds = ring_and_talk(started_at, answered_at, ended_at)
    answered_by = None
    employees: tuple[str, ...] = ()
    if call.direction is Direction.OUTGOING:
        employees = (call.employee.id,) if call.employee else ()
    else:
        answered_by = employee_for_peer(rules, report.peer) if disposition is Disposition.ANSWERED else None
        rung = ((route.responsible,) if route is not None and route.responsible else ()) + (
            route.queue_members if route is not None else ())
        employees = tuple(dict.fromkeys(rung + ((answered_by,) if answered_by else ())))
    return CallRecord(
        linkedid=report.linkedid,
        direction=call.direction,
        line=call.line.number,
        number=call.external or call.external_text,
        disposition=disposition,
        started_at=started_at,
        ended_at=ended_at,
        answered_at=answered_at,
        answered_by=answered_by,
        employees=employees,
        ring_seconds=ring_seconds,
        talk_seconds=talk_seconds,
        entity=entity,
    )
