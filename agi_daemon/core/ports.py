"""What the use cases need from the outside world, as protocols. Adapters implement them."""
from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from .commands import CallLedger, CrmCommand, LedgerUpdate
from .live_calls import CallEvent
from .model import Match
from .outcome import HangupReport


class CrmError(Exception):
    """Base of every CRM failure the services handle; adapters translate their own errors."""


class CrmUnavailable(CrmError):
    """The CRM cannot be reached or refused the request for now; worth retrying later.
    `retry_after`: seconds the CRM asked to wait (Retry-After, a rate limit), when it said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CrmRejected(CrmError):
    """The CRM answered that the request itself is wrong; retrying will not help."""


class CrmLookup(Protocol):
    """The call path's only question to the CRM, answered within daemon.crm_deadline_ms."""

    async def open(self) -> None:
        """Connect, or prepare the store; idempotent. Called once before any other method."""

    async def find_by_phone(self, phone: str) -> Match | None:
        """The known client with this E.164 number: contact first, then company, then an
        unconverted lead. None for an unknown number."""

    async def close(self) -> None:
        """Release connections."""


class WouldWait(Exception):
    """An immediate lookup that cannot answer without waiting: ask `find_by_phone` instead."""


@runtime_checkable
class ImmediateLookup(Protocol):
    """A CRM that can often answer the lookup at once, on the event loop (a local store)."""

    def find_by_phone_now(self, phone: str) -> Match | None:
        """`find_by_phone`'s answer without waiting, or WouldWait (then ask it the usual way)."""


class CrmCommands(Protocol):
    """Where services put what a call asks of the CRM (the outbox), and what the daemon's own
    store remembers of each call's CRM side (the ledger)."""

    async def submit(self, command: CrmCommand) -> None:
        """Return once the command is durable (committed to the daemon's store); delivered
        later, once, in order with the other commands of its lane. Submitting a command whose
        key is already stored does nothing."""

    async def ledger(self, linkedid: str) -> CallLedger:
        """What the call's delivered commands created or joined (empty for a call without)."""


class KeptReports(Protocol):
    """Hangup reports kept in the daemon's store while their call's CRM work runs (a slow or
    unreachable CRM): the hangup handler's session has ended, so a daemon killed meanwhile
    would lose the call (its records and its log). The next start logs what is kept."""

    async def keep(self, report: HangupReport, ended_at: datetime) -> None:
        """Return once the report is committed (raises CrmError when it cannot be)."""

    async def forget(self, linkedid: str) -> None:
        """The call is logged (its log committed to the outbox): the report is no longer needed."""

    async def kept(self) -> list[tuple[HangupReport, datetime]]:
        """The reports this daemon kept and did not forget (a run that stopped mid-way)."""


class CrmDeliverer(Protocol):
    """A remote CRM (Bitrix24, signed webhook): delivers the outbox's commands. The outbox
    calls `deliver` for one command at a time per lane, again after any failure (so the same
    command may arrive twice after a crash: the adapter makes it land once, from `command.key`
    and the ledger); then it stores what the delivery learned in the ledger, with the command
    marked delivered, in one transaction."""

    async def open(self) -> None:
        """Connect; idempotent."""

    async def deliver(self, command: CrmCommand, ledger: CallLedger) -> LedgerUpdate:
        """Make the command true at the CRM. `ledger`: what the daemon knows of the call so far
        (records created, their remote ids, the remote call id). Raises CrmUnavailable
        (retried, after `retry_after` when given) or CrmRejected (a dead letter at once)."""

    async def close(self) -> None:
        """Release connections."""


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC datetime."""


class Notifier(Protocol):
    def publish(self, event: CallEvent) -> None:
        """Tell whoever watches calls live (the agents' call windows) what just happened.
        Never blocks and never raises: the call goes on whatever the watchers do."""
