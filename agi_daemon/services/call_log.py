"""The call-log use case (R12): when a call is over, record it on the matched or created record.

Two sources report a finished call: the dialplan's hangup handler (`call_ended`, always there,
even when AMI is down) and call tracking over AMI (`tracked_call_ended`, which also knows every
leg and the transfers). Both land on one row per linkedid; tracking's record wins.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable, Sequence

from ..core.decisions import route_for
from ..core.model import CallRecord, Direction, EntityRef, Match, Rules
from ..core.outcome import call_record, parse_hangup_report
from ..core.phone import masked, try_e164
from ..core.ports import Clock, CrmAdapter, CrmError
from ..core.rules import CrmAccess, UnknownLine, identify_incoming, identify_outgoing, screen_number
from .pending import PendingWork
from .retry import DEFAULT_DELAYS, with_retries

log = logging.getLogger(__name__)


class CallLogService:
    def __init__(
        self,
        rules: Callable[[], Rules],
        crm: CrmAdapter,
        clock: Clock,
        pending: PendingWork,
        *,
        settle_timeout: float = 10.0,
        retry_delays: Sequence[float] = DEFAULT_DELAYS,
    ) -> None:
        self._rules = rules
        self._crm = crm
        self._clock = clock
        self._pending = pending
        self._settle_timeout = settle_timeout
        self._retry_delays = retry_delays

    async def call_ended(self, values: dict[str, str]) -> CallRecord | None:
        """Log the call the hangup handler reports. Written only if tracking has not logged the
        call already. Returns the record, or None (excluded, unknown line, CRM failure)."""
        ended_at = self._clock.now()
        report = parse_hangup_report(values)
        rules = self._rules()
        if report.direction is Direction.OUTGOING:
            call = identify_outgoing(rules, report.callerid, report.exten, report.linkedid)
        else:
            call = identify_incoming(rules, report.exten, report.callerid, report.linkedid)
        if isinstance(call, UnknownLine):
            log.warning("call %s ended on an unknown line %s: not logged", report.linkedid, masked(call.line_text))
            return None

        def build(entity: EntityRef | None, match: Match | None) -> CallRecord:
            route = route_for(rules, call, match)[0] if call.direction is Direction.INCOMING else None
            return call_record(rules, call, report, route, entity, ended_at)

        return await self._log(rules, call.linkedid, call.external, build, keep_existing=True)

    async def tracked_call_ended(self, record: CallRecord, *, partial: bool = False) -> CallRecord | None:
        """Log a call that call tracking saw end; it replaces the hangup handler's report,
        unless it is `partial` (the call ended while AMI was down: the report knows better)."""
        rules = self._rules()
        external = try_e164(record.number, rules.default_region)
        return await self._log(rules, record.linkedid, external,
                               lambda entity, _: replace(record, entity=entity, partial=partial), keep_existing=partial)

    async def _log(
        self,
        rules: Rules,
        linkedid: str,
        external: str | None,
        build: Callable[[EntityRef | None, Match | None], CallRecord],
        *,
        keep_existing: bool,
    ) -> CallRecord | None:
        """Screen (R7, R8: excluded calls leave no trace), find the record to log on, write."""
        access = screen_number(rules, external).access
        if access is CrmAccess.EXCLUDED:
            return None
        try:
            entity, match = await self._entity(linkedid, external, access)
            record = build(entity, match)
            await with_retries(lambda: self._crm.log_call(record, keep_existing=keep_existing), self._retry_delays)
        except CrmError as exc:
            log.error("call %s: could not log the call of %s: %s", linkedid, masked(external), exc)
            return None
        log.info("call %s: logged %s on %s", linkedid, record.disposition.value, entity or "no record")
        return record

    async def _entity(self, linkedid: str, external: str | None, access: CrmAccess) -> tuple[EntityRef | None, Match | None]:
        """The records this call created, else the known client's record, else none. Waits for
        the call's CRM work first, so a lead still being created is found."""
        if not await self._pending.settle(linkedid, self._settle_timeout):
            log.warning("call %s: CRM work still running after %.0f s, logging the call anyway", linkedid, self._settle_timeout)
        created = await with_retries(lambda: self._crm.records_created_by_call(linkedid), self._retry_delays)
        if created is not None:
            return created.primary, None
        if access is not CrmAccess.ALLOWED or external is None:
            return None, None
        match = await with_retries(lambda: self._crm.find_by_phone(external), self._retry_delays)
        return (match.entity if match else None), match
