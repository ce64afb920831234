"""What the use cases need from the outside world, as protocols. Adapters implement them."""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from .live_calls import CallEvent
from .model import CallRecord, CreatedRecords, EntityRef, Match, Offer, RecordPlan


class CrmError(Exception):
    """Base of every CRM failure the services handle; adapters translate their own errors."""


class CrmUnavailable(CrmError):
    """The CRM cannot be reached or refused the request for now; worth retrying later."""


class CrmRejected(CrmError):
    """The CRM answered that the request itself is wrong; retrying will not help."""


class CrmAdapter(Protocol):
    async def open(self) -> None:
        """Connect, or prepare the store; idempotent. Called once before any other method."""

    async def find_by_phone(self, phone: str) -> Match | None:
        """The known client with this E.164 number: contact first, then company, then an
        unconverted lead. None for an unknown number."""

    async def records_created_by_call(self, linkedid: str) -> CreatedRecords | None:
        """The records a call created, or None."""

    async def create_records(self, plan: RecordPlan) -> CreatedRecords:
        """Create the records of a new client in one transaction. Idempotent per
        (linkedid, phone): a second call returns the records of the first."""

    async def record_offer(self, offer: Offer) -> None:
        """Keep an offer for the call window. Idempotent per linkedid."""

    async def set_responsible(self, entities: tuple[EntityRef, ...], employee: str) -> None:
        """Give these records a new responsible employee (R10)."""

    async def log_call(self, record: CallRecord, *, keep_existing: bool = False) -> None:
        """Record a finished call (R12), one entry per linkedid: a second write replaces the
        first, unless `keep_existing` (the hangup handler's report yields to call tracking's)."""

    async def close(self) -> None:
        """Release connections."""


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC datetime."""


class Notifier(Protocol):
    def publish(self, event: CallEvent) -> None:
        """Tell whoever watches calls live (the agents' call windows) what just happened.
        Never blocks and never raises: the call goes on whatever the watchers do."""
