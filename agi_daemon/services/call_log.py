"""The call-log use case (R12): when a call is over, record it on the matched or created record.

Two sources report a finished call: the dialplan's hangup handler (`call_ended`, always there,
even when AMI is down) and call tracking over AMI (`tracked_call_ended`, which also knows every
leg and the transfers). Both land on one row per linkedid; tracking's record wins.

The hangup report is logged from what routing worked out and decided for the call
(`RoutedCalls`); the route is never decided again at hangup time, with rules that may have
been reloaded since. A call routing did not decide (the daemon did not answer, or was
restarted since) is identified from the report alone, and what it should have created is
submitted again: a no-op when the outbox has it already (the same idempotency key), the
call's intent rebuilt when it was lost.

Both reports become `LogCall` commands of the outbox; which one the call log keeps is
core.commands.merge_call_log.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime
from typing import Callable, Sequence

from ..core.commands import CallReport, LogCall
from ..core.decisions import answered
from ..core.model import CallRecord, EntityRef, Rules
from ..core.outcome import HangupReport, call_record
from ..core.phone import masked, try_e164
from ..core.live_calls import NoOneListens
from ..core.ports import Clock, CrmCommands, CrmError, CrmLookup, KeptReports, Notifier
from ..core.rules import CallFacts, CrmAccess, UnknownLine, identify, screen, screen_number
from .crm_intent import submit_intent, submit_without_lookup
from .pending import PendingWork
from .retry import DEFAULT_DELAYS, with_retries
from .routed_calls import RoutedCall, RoutedCalls

log = logging.getLogger(__name__)

KEPT_REPORTS_EVERY_S = 60.0  # how often the kept hangup reports nobody logs are looked for


class CallLogService:
    def __init__(
        self,
        rules: Callable[[], Rules],
        crm: CrmLookup,
        clock: Clock,
        pending: PendingWork,
        *,
        commands: CrmCommands,
        routed: RoutedCalls,
        settle_timeout: float = 10.0,
        retry_delays: Sequence[float] = DEFAULT_DELAYS,
        notifier: Notifier | None = None,
        kept: KeptReports | None = None,
    ) -> None:
        """`routed`: what routing decided for each call (shared with RoutingService);
        `commands`: the outbox; `notifier` hears of an offer made for a call rebuilt here;
        `kept`: where a hangup report waits for its call's CRM work (None: in memory only)."""
        self._kept = kept
        self._notifier = notifier or NoOneListens()
        self._rules = rules
        self._commands = commands
        self._routed = routed
        self._crm = crm
        self._clock = clock
        self._pending = pending
        self._settle_timeout = settle_timeout
        self._retry_delays = retry_delays

    async def call_ended(self, report: HangupReport, *, ended_at: datetime | None = None) -> CallRecord | None:
        """Log the call the hangup handler reports. Written only if tracking has not logged the
        call already. Returns the record, or None (excluded, unknown line, CRM failure).

        While the call's CRM work still runs (its caller looked up again past the deadline)
        the report is kept in the store until the call is logged: the next start logs it
        (`log_kept_reports`, which passes the `ended_at` it kept), should the daemon stop
        first."""
        replayed = ended_at is not None
        ended_at = ended_at or self._clock.now()
        routed = self._routed.pop(report.linkedid)
        kept = replayed or await self._keep(report, ended_at, routed is None)
        record = await self._report(report, ended_at, routed)
        if kept and self._kept is not None:  # a failure above leaves it kept, for the next start
            # the log is committed; the call's records may still be only in memory (its work
            # outlasted settle_timeout): forgotten once they are committed too. A stop first
            # (the drain cancels this) leaves the report kept.
            while self._pending.running(report.linkedid):
                await self._pending.settle(report.linkedid, self._settle_timeout)
            try:
                await self._kept.forget(report.linkedid)
            except CrmError as exc:  # logged again at the next start: a no-op then (same keys)
                log.warning("call %s: logged; its kept hangup report stays, looked at again within a minute (%s)",
                            report.linkedid, exc)
        return record

    async def _keep(self, report: HangupReport, ended_at: datetime, not_routed: bool) -> bool:
        """Keep the report when the call's CRM work may outlast the hangup session: routing's
        still runs, or the call's is to be rebuilt (routed by an earlier run). True once kept."""
        if self._kept is None or not (not_routed or self._pending.running(report.linkedid)):
            return False
        if not_routed and isinstance(identify(self._rules(), report.entry, report.linkedid), UnknownLine):
            return False  # not logged at all (_report says why): nothing to keep
        try:
            await self._kept.keep(report, ended_at)
        except CrmError as exc:
            log.warning("call %s: its hangup report could not be kept while the call's CRM work runs (%s)",
                        report.linkedid, exc)
            return False
        return True

    async def log_kept_reports(self) -> int:
        """Log the calls whose kept hangup reports nobody is logging: an earlier run's (it
        stopped, or was killed, while their CRM work ran), a stopped daemon's of this host, an
        orphan's; this run's own whose logging ended before they were forgotten. Returns how
        many it started."""
        if self._kept is None:
            return 0
        try:
            kept = await self._kept.kept()
        except CrmError as exc:
            log.warning("the kept hangup reports could not be read (%s): read again in a while", exc)
            return 0
        started = 0
        for report, ended_at in kept:
            key = f"call-end:{report.linkedid}"
            if not self._pending.running(key):  # not being logged now (by the hangup that kept it)
                self._pending.start(key, self.call_ended(report, ended_at=ended_at))
                started += 1
        if started:
            log.info("%d calls whose hangup reports were kept and not logged: logging them", started)
        return started

    async def keep_logging_kept_reports(self, every: float = KEPT_REPORTS_EVERY_S) -> None:
        """`log_kept_reports` at the start, then every `every` seconds (a daemon of a shared
        store that stops leaves its reports to the others), until cancelled."""
        while True:
            try:
                await self.log_kept_reports()
            except Exception:  # this task belongs to the app's TaskGroup: one bad round ends nothing
                log.exception("logging the kept hangup reports failed; tried again in %.0f s", every)
            await asyncio.sleep(every)

    async def _report(self, report: HangupReport, ended_at: datetime, routed: RoutedCall | None) -> CallRecord | None:
        rules = self._rules()
        client: EntityRef | None = None
        if routed is not None:
            call, route, client = routed.call, routed.route, routed.client
        else:
            identified = identify(rules, report.entry, report.linkedid)
            if isinstance(identified, UnknownLine):
                log.warning("call %s ended on an unknown line %s: not logged", report.linkedid, masked(identified.line_text))
                return None
            call, route = identified, None
            client = await self._rebuild_intent(rules, call)
        return await self._log(rules, call.linkedid, call.external,
                               lambda entity: call_record(rules, call, report, route, entity or client, ended_at),
                               CallReport.HANGUP)

    async def _rebuild_intent(self, rules: Rules, call: CallFacts) -> EntityRef | None:
        """A call routing did not decide (in this run of the daemon): look the caller up and
        submit what the call creates, as routing would have. When the call created its records
        before, the lookup finds them (nothing to create) or the outbox has the command (the
        same key: nothing stored twice). Returns the known client's record, if any."""
        if screen(rules, call).access is not CrmAccess.ALLOWED or call.external is None:
            return None
        phone = call.external
        try:
            match = await with_retries(lambda: self._crm.find_by_phone(phone), self._retry_delays)
        except CrmError as exc:  # as routing does: a new caller's records are submitted all the same
            await submit_without_lookup(self._commands, self._notifier, rules, call, self._clock.now(), exc)
            return None
        await submit_intent(self._commands, self._notifier, call, answered(rules, call, match).action,
                            self._clock.now())
        return None if match is None else match.entity

    async def unrouted_call(self, call: CallFacts) -> None:
        """A call the daemon was never asked about has started (call tracking saw an employee
        dial the trunk outside agi-daemon-outgoing): submit what routing would have (R3, R4),
        before what the call does next (a transfer's R10, its log: they follow in order)."""
        await self._rebuild_intent(self._rules(), call)

    async def tracked_call_ended(self, record: CallRecord, *, partial: bool = False) -> CallRecord | None:
        """Log a call that call tracking saw end; it replaces the hangup handler's report,
        unless it is `partial` (the call ended while AMI was down: the report knows better)."""
        rules = self._rules()
        external = try_e164(record.number, rules.default_region)
        return await self._log(rules, record.linkedid, external,
                               lambda entity: replace(record, entity=entity, partial=partial),
                               CallReport.PARTIAL if partial else CallReport.TRACKED)

    async def _log(
        self,
        rules: Rules,
        linkedid: str,
        external: str | None,
        build: Callable[[EntityRef | None], CallRecord],
        report: CallReport,
    ) -> CallRecord | None:
        """Screen (R7, R8: excluded calls leave no trace), then submit the call log. The record
        the call created or joined is known once its creation is delivered; the outbox
        delivers the log after it, and logs it on that record then."""
        access = screen_number(rules, external).access
        if access is CrmAccess.EXCLUDED:
            log.info("call %s: not logged: %s is excluded from the CRM (R7/R8)", linkedid, masked(external))
            return None
        if not await self._pending.settle(linkedid, self._settle_timeout):
            log.warning("call %s: CRM work still running after %.0f s, logging the call anyway", linkedid, self._settle_timeout)
        look_up = external if access is CrmAccess.ALLOWED else None
        try:
            entity = (await self._commands.ledger(linkedid)).entity
        except CrmError:
            entity = None  # the delivery finds it
        record = build(entity)
        await self._commands.submit(LogCall(record, report, look_up))
        log.info("call %s: logged %s on %s (%s report, through the outbox)", linkedid, record.disposition.value,
                 entity or "the record the CRM finds", report.value)
        return record
