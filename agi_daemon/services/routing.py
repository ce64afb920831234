"""The routing use case: the dialplan asks where a call goes; the CRM is asked, within a deadline.

A call is never left waiting on the CRM: the lookup runs as the call's pending work, routing
waits for it at most `deadline` seconds and then sends the call to the queue group. The
rest of the CRM work (creating records or an offer) always happens after the answer.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Sequence

from ..core.decisions import CreateRecords, Decision, LookupOutcome, MakeOffer, RoutingStatus, decide
from ..core.live_calls import NoOneListens, OfferMade, RecordsCreated
from ..core.model import Match, Offer, Rules
from ..core.phone import masked
from ..core.ports import Clock, CrmAdapter, CrmError, Notifier
from ..core.rules import CallFacts, CrmAccess, Screening, UnknownLine, identify_incoming, identify_outgoing, screen
from .pending import PendingWork
from .retry import DEFAULT_DELAYS, attempt, with_retries

log = logging.getLogger(__name__)

_Lookup = tuple[LookupOutcome, Match | None]


class RoutingService:
    def __init__(
        self,
        rules: Callable[[], Rules],
        crm: CrmAdapter,
        clock: Clock,
        pending: PendingWork,
        *,
        deadline: float,
        retry_delays: Sequence[float] = DEFAULT_DELAYS,
        notifier: Notifier | None = None,
    ) -> None:
        """`rules` returns the running rules (they change on reload); `deadline` is
        daemon.crm_deadline_ms in seconds; `notifier` hears of records created and offers made."""
        self._notifier = notifier or NoOneListens()
        self._rules = rules
        self._crm = crm
        self._clock = clock
        self._pending = pending
        self._deadline = deadline
        self._retry_delays = retry_delays

    async def route_incoming(self, line_text: str, caller_text: str, linkedid: str) -> Decision:
        rules = self._rules()
        return await self._route(rules, identify_incoming(rules, line_text, caller_text, linkedid))

    async def route_outgoing(self, extension: str, number_text: str, linkedid: str) -> Decision:
        rules = self._rules()
        return await self._route(rules, identify_outgoing(rules, extension, number_text, linkedid))

    async def _route(self, rules: Rules, call: CallFacts | UnknownLine) -> Decision:
        if isinstance(call, UnknownLine):
            log.warning("no line for %s: the dialplan falls back", masked(call.line_text))
            return Decision(RoutingStatus.ERROR, None, None, None, call.trace)
        screening = screen(rules, call)
        if screening.access is not CrmAccess.ALLOWED:
            log.info("call %s: %s, no CRM lookup", call.linkedid, screening.access.value)
            return decide(rules, call, screening, LookupOutcome.NOT_ASKED)

        looked_up: asyncio.Future[_Lookup] = asyncio.get_running_loop().create_future()
        self._pending.start(call.linkedid, self._crm_work(rules, call, screening, looked_up))
        try:
            outcome, match = await asyncio.wait_for(asyncio.shield(looked_up), self._deadline)
        except TimeoutError:
            log.warning("call %s: CRM lookup over %.0f ms, routing to the queue group", call.linkedid, self._deadline * 1000)
            outcome, match = LookupOutcome.LATE, None
        return decide(rules, call, screening, outcome, match)

    async def _crm_work(self, rules: Rules, call: CallFacts, screening: Screening, looked_up: "asyncio.Future[_Lookup]") -> None:
        """Look the caller up, tell the waiting router, then create what the decision says.
        (PendingWork logs any other error: this task belongs to the app's TaskGroup.)"""
        assert call.external is not None
        phone = call.external
        try:
            try:
                match = await attempt(lambda: self._crm.find_by_phone(phone))
            except CrmError as exc:
                log.warning("call %s: CRM lookup of %s failed (%s), retrying", call.linkedid, masked(phone), exc)
                _resolve(looked_up, (LookupOutcome.FAILED, None))
                match = await with_retries(lambda: self._crm.find_by_phone(phone), self._retry_delays)
            _resolve(looked_up, (LookupOutcome.ANSWERED, match))
            decision = decide(rules, call, screening, LookupOutcome.ANSWERED, match)
            await self._perform(call, decision)
        except CrmError as exc:
            log.error("call %s: CRM work for %s given up: %s", call.linkedid, masked(phone), exc)
        finally:  # whatever happened, the router waiting for the lookup is answered
            _resolve(looked_up, (LookupOutcome.FAILED, None))

    async def _perform(self, call: CallFacts, decision: Decision) -> None:
        action = decision.crm_action
        if isinstance(action, CreateRecords):
            records = await with_retries(lambda: self._crm.create_records(action.plan), self._retry_delays)  # the CRM logs what it created
            self._notifier.publish(RecordsCreated(call.linkedid, records.primary, action.plan.responsible))
        elif isinstance(action, MakeOffer):
            offer = Offer(call.linkedid, call.direction, call.line.number, call.external or "", action.employees, self._clock.now())
            await with_retries(lambda: self._crm.record_offer(offer), self._retry_delays)
            self._notifier.publish(OfferMade(offer))
            log.info("call %s: offer to create a record for %s", call.linkedid, masked(call.external))


def _resolve(future: "asyncio.Future[_Lookup]", value: _Lookup) -> None:
    if not future.done():
        future.set_result(value)
