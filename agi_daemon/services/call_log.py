"""The call-log use case (R12): when a call hangs up, record it on the matched or created record."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from ..core.decisions import Route, route_for
from ..core.model import CallRecord, Direction, EntityRef, Rules
from ..core.outcome import call_record, parse_hangup_report
from ..core.phone import masked
from ..core.ports import Clock, CrmAdapter, CrmError
from ..core.rules import CrmAccess, UnknownLine, identify_incoming, identify_outgoing, screen
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
        """Log the call the hangup handler reports. Excluded calls (R7, R8) leave no trace.
        Call tracking (AMI) knows more (transfers, every leg), so its record wins: this one is
        written only if tracking has not logged the call. Returns the record, or None."""
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
        access = screen(rules, call).access
        if access is CrmAccess.EXCLUDED:
            return None
        if not await self._pending.settle(report.linkedid, self._settle_timeout):
            log.warning("call %s: CRM work still running after %.0f s, logging the call anyway", report.linkedid, self._settle_timeout)
        try:
            entity, route = await self._entity_and_route(rules, call, access)
            record = call_record(rules, call, report, route, entity, ended_at)
            await with_retries(lambda: self._crm.log_call(record, keep_existing=True), self._retry_delays)
        except CrmError as exc:
            log.error("call %s: could not log the call of %s: %s", report.linkedid, masked(call.external), exc)
            return None
        log.info("call %s: logged %s on %s", report.linkedid, record.disposition.value, entity or "no record")
        return record

    async def _entity_and_route(self, rules: Rules, call, access: CrmAccess) -> tuple[EntityRef | None, Route | None]:
        created = await with_retries(lambda: self._crm.records_created_by_call(call.linkedid), self._retry_delays)
        match = None
        if created is None and access is CrmAccess.ALLOWED:
            match = await with_retries(lambda: self._crm.find_by_phone(call.external), self._retry_delays)
        entity = created.primary if created else (match.entity if match else None)
        route = route_for(rules, call, match)[0] if call.direction is Direction.INCOMING else None
        return entity, route
