"""Who is on the call and may the CRM hear of it: the facts of a call, and rules R7/R8.

Pure: every function takes the Rules and plain values and returns values.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from .model import Direction, Employee, Line, Rules
from .phone import try_e164


class TraceStep(NamedTuple):
    """One line of the rule trace `simulate` prints: which rule, did it fire, and why. (A
    named tuple: every call builds a dozen, and a frozen dataclass costs three times as much.)"""

    rule: str  # "R7", or "line" / "deadline" for steps that are not article rules
    fired: bool
    reason: str


@dataclass(frozen=True)
class CallEntry:
    """How a call entered the daemon's dialplan, as Asterisk shows it: what `identify` reads.

    The same two fields in both directions, in Asterisk's order (EXTEN, then caller ID):
    incoming, EXTEN is the line as the trunk delivers it and the caller ID the client's number;
    outgoing, EXTEN is the number the employee dialled and the caller ID their extension."""

    direction: Direction
    exten: str
    caller_id: str


@dataclass(frozen=True)
class CallFacts:
    """Which line, which employee, which external number: a call resolved against the YAML file."""

    direction: Direction
    line: Line
    external: str | None  # the client's number in E.164; None when withheld or unreadable
    external_text: str  # the number as Asterisk gave it
    linkedid: str
    employee: Employee | None = None  # outgoing: the employee who dialled
    trace: tuple[TraceStep, ...] = ()  # which line was used, and why


@dataclass(frozen=True)
class UnknownLine:
    """The call arrived on a number the YAML file does not list."""

    line_text: str
    trace: tuple[TraceStep, ...]


class CrmAccess(StrEnum):
    ALLOWED = "allowed"
    EXCLUDED = "excluded"  # R7 or R8: the CRM must never hear of this call
    NO_NUMBER = "no_number"  # withheld or unreadable number: nothing to look up


@dataclass(frozen=True)
class Screening:
    access: CrmAccess
    trace: tuple[TraceStep, ...]


_WITHHELD = {"", "unknown", "anonymous", "restricted", "private"}


def _external(text: str, region: str) -> str | None:
    if (text or "").strip().lower() in _WITHHELD:
        return None
    return try_e164(text, region)


def identify(rules: Rules, entry: CallEntry, linkedid: str) -> CallFacts | UnknownLine:
    """The one place where a call's line, employee and external number are worked out: for
    routing, the hangup report, call tracking and `simulate` alike.

    Incoming: the line is EXTEN. Outgoing: the line is the calling employee's own line from
    the YAML file, or the first line."""
    if entry.direction is Direction.INCOMING:
        return _incoming(rules, entry, linkedid)
    return _outgoing(rules, entry, linkedid)


def _incoming(rules: Rules, entry: CallEntry, linkedid: str) -> CallFacts | UnknownLine:
    line_number = try_e164(entry.exten, rules.default_region)
    line = rules.lines.get(line_number) if line_number else None
    if line is None:
        step = TraceStep("line", False, f"line {entry.exten!r} is not among the numbers of the config")
        return UnknownLine(entry.exten, (step,))
    return CallFacts(
        direction=Direction.INCOMING,
        line=line,
        external=_external(entry.caller_id, rules.default_region),
        external_text=entry.caller_id,
        linkedid=linkedid,
        trace=(TraceStep("line", True, f"line {line.number} ({line.name}): the number called"),),
    )


def _outgoing(rules: Rules, entry: CallEntry, linkedid: str) -> CallFacts | UnknownLine:
    employee = rules.employee_by_extension(entry.caller_id)
    line = rules.lines.get(employee.line) if employee is not None and employee.line else None
    if line is not None:
        why = f"the line of employee {employee.id}" if employee is not None else ""
    else:
        line = next(iter(rules.lines.values()), None)
        if employee is None:
            why = f"the first line of the config: extension {entry.caller_id!r} is not an employee's"
        else:
            why = f"the first line of the config: employee {employee.id} has no line of their own"
    if line is None:
        return UnknownLine("", (TraceStep("line", False, "the config has no line for outgoing calls"),))
    return CallFacts(
        direction=Direction.OUTGOING,
        line=line,
        external=_external(entry.exten, rules.default_region),
        external_text=entry.exten,
        linkedid=linkedid,
        employee=employee,
        trace=(TraceStep("line", True, f"line {line.number} ({line.name}), {why}"),),
    )


def screen(rules: Rules, call: CallFacts) -> Screening:
    """May the CRM hear of this call at all? The exception list (R7) beats everything,
    then numbers found in an employee's profile (R8)."""
    return screen_number(rules, call.external)


def screen_number(rules: Rules, external: str | None) -> Screening:
    """`screen` for a bare external number (E.164, or None when withheld)."""
    if external is None:
        return Screening(CrmAccess.NO_NUMBER, (TraceStep("number", False, "the external number is withheld or unreadable: no CRM lookup"),))
    if external in rules.crm.exception_phones:
        return Screening(CrmAccess.EXCLUDED, (TraceStep("R7", True, "the number is on the CRM exception list: no lookup, no record, no call log"),))
    steps = [TraceStep("R7", False, "the number is not on the CRM exception list")]
    owner = rules.employee_with_phone(external)
    if owner is not None:
        steps.append(TraceStep("R8", True, f"the number is in employee {owner.id}'s profile: the call is not recorded in the CRM"))
        return Screening(CrmAccess.EXCLUDED, tuple(steps))
    steps.append(TraceStep("R8", False, "the number is not in any employee's profile"))
    return Screening(CrmAccess.ALLOWED, tuple(steps))
