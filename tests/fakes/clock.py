"""A clock the test moves by hand."""
from __future__ import annotations

from datetime import datetime, timezone


class FixedClock:
    def __init__(self, at: datetime | None = None) -> None:
        self.at = at or datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.at
