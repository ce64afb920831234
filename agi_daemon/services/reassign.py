"""R10: a new client's call manually transferred to another employee moves the records it
created to that employee. A known client's records never change (the call created none)."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from ..core.model import Rules, TransferKind
from ..core.ports import CrmAdapter, CrmError
from .pending import PendingWork
from .retry import DEFAULT_DELAYS, with_retries

log = logging.getLogger(__name__)

# Routing's CRM work is bounded (retries with a time limit per attempt): waiting this many
# settle timeouts for it covers it; past that something is wrong and the transfer is dropped.
SETTLE_ROUNDS = 12


class ReassignService:
    def __init__(
        self,
        rules: Callable[[], Rules],
        crm: CrmAdapter,
        pending: PendingWork,
        *,
        settle_timeout: float = 10.0,
        retry_delays: Sequence[float] = DEFAULT_DELAYS,
    ) -> None:
        self._rules = rules
        self._crm = crm
        self._pending = pending
        self._settle_timeout = settle_timeout
        self._retry_delays = retry_delays

    async def transferred(self, linkedid: str, line_number: str, employee: str, kind: TransferKind) -> bool:
        """Apply R10 for one successful transfer; True when records changed responsible."""
        line = self._rules().lines.get(line_number)
        if line is None or not line.crm.reassign_on_manual_transfer:
            log.info("call %s: %s transfer to %s, the line keeps responsibles", linkedid, kind.value, employee)
            return False
        # The call's records may still be being created (a slow CRM): "none yet" must not be
        # mistaken for a known client, so wait for that work, however long the CRM takes.
        for _ in range(SETTLE_ROUNDS):
            if await self._pending.settle(linkedid, self._settle_timeout):
                break
            log.warning("call %s: records still being created, the %s transfer to %s waits", linkedid, kind.value, employee)
        else:
            log.error("call %s: records still not created after %.0f s: the %s transfer to %s is not applied",
                      linkedid, SETTLE_ROUNDS * self._settle_timeout, kind.value, employee)
            return False
        try:
            created = await with_retries(lambda: self._crm.records_created_by_call(linkedid), self._retry_delays)
            if created is None:
                log.info("call %s: %s transfer to %s of a known client: responsible unchanged", linkedid, kind.value, employee)
                return False
            await with_retries(lambda: self._crm.set_responsible(created.all, employee), self._retry_delays)
        except CrmError as exc:
            log.error("call %s: could not give the new records to %s: %s", linkedid, employee, exc)
            return False
        log.info("call %s: %s transfer: %s now responsible for %s", linkedid, kind.value, employee, ", ".join(map(str, created.all)))
        return True
