"""What the CRM pages ask for: filters on the call log and on the records, as values."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PAGE_SIZE = 200


@dataclass(frozen=True)
class CallFilter:
    phone: str | None = None  # E.164
    employee: str | None = None  # an employee involved (rung, answered, transferred to)
    line: str | None = None  # E.164
    since: datetime | None = None
    until: datetime | None = None
    limit: int = PAGE_SIZE


@dataclass(frozen=True)
class RecordFilter:
    phone: str | None = None
    responsible: str | None = None
    pipeline: str | None = None  # deals only
    since: datetime | None = None  # created at or after
    until: datetime | None = None
    limit: int = PAGE_SIZE


class Keep:
    """A field an edit of a record leaves as it is (`CrmPages.update(responsible=KEEP)`)."""


KEEP = Keep()
