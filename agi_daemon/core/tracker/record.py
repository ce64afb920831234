"""The R12 record of a call the tracker followed to its end."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..call_times import ring_and_talk
from ..model import CallRecord, Direction, Disposition, Rules
from ..outcome import disposition_for, employee_for_peer
from ..rules import CallFacts
from .state import CallState

# ---------------------------------------------------------------------------- the record


def call_disposition(answered: bool, statuses: Iterable[str]) -> Disposition:
    """The call's disposition from the DialStatus of every leg ("" for a leg still ringing)."""
    outcomes = [disposition_for(status or "CANCEL") for status in statuses]
    if answered or Disposition.ANSWERED in outcomes:
        return Disposition.ANSWERED
    if not outcomes:
        return disposition_for("")
    if all(outcome is Disposition.BUSY for outcome in outcomes):
        return Disposition.BUSY
    if Disposition.MISSED in outcomes:
        return Disposition.MISSED
    return Disposition.FAILED


def record_for(call: CallState, facts: CallFacts, ended_at: datetime) -> CallRecord:
    """The R12 record of a tracked call (identified as `facts`) that ended at `ended_at`."""
    answered_at = call.answered_at
    if answered_at is not None:
        answered_at = min(max(answered_at, call.started_at), ended_at)
    employees = call.rung
    if facts.direction is Direction.OUTGOING and facts.employee is not None:
        employees = (facts.employee.id,) + tuple(e for e in call.rung if e != facts.employee.id)
    ring_seconds, talk_seconds = ring_and_talk(call.started_at, answered_at, ended_at)
    return CallRecord(
        linkedid=call.linkedid,
        direction=facts.direction,
        line=facts.line.number,
        number=facts.external or facts.external_text,
        disposition=call_disposition(answered_at is not None, (leg.status for leg in call.legs)),
        started_at=call.started_at,
        ended_at=ended_at,
        answered_at=answered_at,
        answered_by=call.answered_by,
        employees=employees,
        ring_seconds=ring_seconds,
        talk_seconds=talk_seconds,
        transfers=call.transfers,
    )


def channel_endpoint(name: str) -> str:
    """The dialled endpoint a channel name stands for: "PJSIP/101-0000000a" -> "PJSIP/101",
    "Local/101@employees-00000003;1" (either half) -> "Local/101@employees"."""
    base = name
    if base.startswith("Local/") and base[-2:] in (";1", ";2"):
        base = base[:-2]
    head, sep, tail = base.rpartition("-")
    if sep and head and tail and all(ch in "0123456789abcdefABCDEF" for ch in tail):
        return head
    return base


def employee_for_channel(rules: Rules, name: str) -> str | None:
    """The employee whose endpoint (asterisk.endpoint_template) a channel is, or None."""
    return employee_for_peer(rules, channel_endpoint(name)) if name else None
