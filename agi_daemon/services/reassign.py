"""R10: a new client's call manually transferred to another employee moves the records it
created to that employee. A known client's records never change (the call created none).

The change is a command of the outbox, delivered after the call's records are created (the
same lane): at delivery the call's ledger says which records the call created, if any. The CRM
is never asked "what did this call create"."""
from __future__ import annotations

import logging
import time
from typing import Callable

from collections import Counter

from ..core.commands import ChangeResponsible
from ..core.model import Rules, TransferKind
from ..core.ports import CrmCommands
from .pending import PendingWork

log = logging.getLogger(__name__)

# Routing's CRM work is bounded (retries with a time limit per attempt): waiting this many
# settle timeouts for it covers it; past that something is wrong and the transfer is dropped.
SETTLE_ROUNDS = 12
TRANSFERS_KEPT = 20_000  # calls whose transfers are counted (far beyond a PBX's concurrent calls)


class ReassignService:
    def __init__(
        self,
        rules: Callable[[], Rules],
        commands: CrmCommands,
        pending: PendingWork,
        *,
        settle_timeout: float = 10.0,
        first_transfer: int | None = None,
    ) -> None:
        self._rules = rules
        self._commands = commands
        self._pending = pending
        self._settle_timeout = settle_timeout
        self._transfers: Counter[str] = Counter()  # transfers seen per call, for each command's key
        # A transfer's number in its command's key. Counted per call from this run's start in
        # µs since the epoch: a transfer after a restart (or after its call was forgotten here)
        # never gets the key of an earlier one, which the outbox would take for the same change.
        self._first = time.time_ns() // 1000 if first_transfer is None else first_transfer

    async def transferred(self, linkedid: str, line_number: str, employee: str, kind: TransferKind,
                          external: str | None = None) -> bool:
        """Apply R10 for one successful transfer of the call with `external` number; True when
        the change is submitted (it changes the records the call created, if it created any)."""
        line = self._rules().lines.get(line_number)
        if line is None or not line.crm.reassign_on_manual_transfer:
            log.info("call %s: %s transfer to %s, the line keeps responsibles", linkedid, kind.value, employee)
            return False
        # The call's CRM work (its lookup, then its records submitted to the outbox) may still
        # run (a slow CRM): the change must be submitted after the records, so wait for it.
        for _ in range(SETTLE_ROUNDS):
            if await self._pending.settle(linkedid, self._settle_timeout):
                break
            log.warning("call %s: records still being created, the %s transfer to %s waits", linkedid, kind.value, employee)
        else:
            log.error("call %s: records still not created after %.0f s: the %s transfer to %s is not applied",
                      linkedid, SETTLE_ROUNDS * self._settle_timeout, kind.value, employee)
            return False
        self._transfers[linkedid] += 1
        if len(self._transfers) > TRANSFERS_KEPT:  # forget the oldest calls
            del self._transfers[next(iter(self._transfers))]
        command = ChangeResponsible(linkedid, external or f"call:{linkedid}", employee,
                                    self._first + self._transfers[linkedid])
        await self._commands.submit(command)
        log.info("call %s: %s transfer to %s: the records the call created go to them", linkedid, kind.value, employee)
        return True
