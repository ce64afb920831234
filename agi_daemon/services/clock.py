"""The wall clock the services use; core never reads it, tests pass their own."""
from datetime import datetime, timezone


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)
