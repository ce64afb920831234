"""The call-log use case (R12): when a call is over, record it on the matched or created record.

Two sources report a finished call: the dialplan's hangup handler (`call_ended`, always there,
even when AMI is down) and call tracking over AMI (`tracked_call_ended`, which also knows every
leg and the transfers). Both land on one row per linkedid; tracking's record wins.

The hangup report is logged from what routing worked out and decided for the call
(`RoutedCalls`); the route is never decided again at hangup time, with rules that may have
been reloaded since. A call routing did not decide (the daemon did not answer) is identified
from the report alone.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable, Sequence

from ..core.model import CallRecord, EntityRef, Rules
from ..core.outcome import HangupReport, call_record
from ..core.phone import masked, try_e164
from ..core.ports import Clock, CrmAdapter, CrmError
from ..core.rules import CrmAccess, UnknownLine, identify, screen_number
from .pending import PendingWork
from .retry import DEFAULT_DELAYS, with_retries
from .routed_calls import RoutedCalls

log = logging.getLogger(__name__)


class CallLogService:
    def __init__(
        self,
        rules: Callable[[], Rules],
        crm: CrmAdapter,
        clock: Clock,
        pending: PendingWork,
        *,
        routed: RoutedCalls,
        settle_timeout: float = 10.0,
        retry_delays: Sequence[float] = DEFAULT_DELAYS,
    ) -> None:
        """`routed`: what routing decided for each call (shared with RoutingService)."""
        self._rules = rules
        self._routed = routed
        self._crm = crm
        self._clock = clock
        self._pending = pending
        self._settle_timeout = settle_timeout
        self._retry_delays = retry_delays

    async def call_ended(self, report: HangupReport) -> CallRecord | None:
        """Log the call the hangup handler reports. Written only if tracking has not logged the
        call already. Returns the record, or None (excluded, unknown line, CRM failure)."""
        ended_at = self._clock.now()
        rules = self._rules()
        routed = self._routed.pop(report.linkedid)
        if routed is not None:
            call, route = routed.call, routed.route
        else:
            identified = identify(rules, report.entry, report.linkedid)
            if isinstance(identified, UnknownLine):
                log.warning("call %s ended on an unknown line %s: not logged", report.linkedid, masked(identified.line_text))
                return None
            call, route = identified, None
        return await self._log(rules, call.linkedid, call.external,
                               lambda entity: call_record(rules, call, report, route, entity, ended_at), keep_existing=True)

    async def tracked_call_ended(self, record: CallRecord, *, partial: bool = False) -> CallRecord | None:
        """Log a call that call tracking saw end; it replaces the hangup handler's report,
        unless it is `partial` (the call ended while AMI was down: the report knows better)."""
        rules = self._rules()
        external = try_e164(record.number, rules.default_region)
        return await self._log(rules, record.linkedid, external,
                               lambda entity: replace(record, entity=entity, partial=partial), keep_existing=partial)

    async def _log(
        self,
        rules: Rules,
        linkedid: str,
        external: str | None,
        build: Callable[[EntityRef | None], CallRecord],
        *,
        keep_existing: bool,
    ) -> CallRecord | None:
        """Screen (R7, R8: excluded calls leave no trace), find the record to log on, write."""
        access = screen_number(rules, external).access
        if access is CrmAccess.EXCLUDED:
            log.info("call %s: not logged: %s is excluded from the CRM (R7/R8)", linkedid, masked(external))
            return None
        try:
            entity = await self._entity(linkedid, external, access)
            record = build(entity)
            await with_retries(lambda: self._crm.log_call(record, keep_existing=keep_existing), self._retry_delays)
        except CrmError as exc:
            log.error("call %s: could not log the call of %s: %s", linkedid, masked(external), exc)
            return None
        log.info("call %s: logged %s on %s", linkedid, record.disposition.value, entity or "no record")
        return record

    async def _entity(self, linkedid: str, external: str | None, access: CrmAccess) -> EntityRef | None:
        """The records this call created, else the known client's record, else none. Waits for
        the call's CRM work first, so a lead still being created is found."""
        if not await self._pending.settle(linkedid, self._settle_timeout):
            log.warning("call %s: CRM work still running after %.0f s, logging the call anyway", linkedid, self._settle_timeout)
        created = await with_retries(lambda: self._crm.records_created_by_call(linkedid), self._retry_delays)
        if created is not None:
            return created.primary
        if access is not CrmAccess.ALLOWED or external is None:
            return None
        match = await with_retries(lambda: self._crm.find_by_phone(external), self._retry_delays)
        return match.entity if match else None
