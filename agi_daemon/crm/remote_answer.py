"""What every remote CRM's client (Bitrix24's, the signed webhook's sender) reads from an
answer the same way, and what the outbox keeps of an error: `retry_after` (the Retry-After
header, at most MAX_RETRY_AFTER_SECONDS) and `printable` (a remote text fit for an error, a log
line and a database text column, numbers masked)."""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from ..core.phone import numbers_masked

MAX_RETRY_AFTER_SECONDS = 3600.0
"""The longest wait a remote CRM's Retry-After is taken at: a longer one (`1e9`, a date years
ahead) would park the command's lane for good; the outbox's own backoff goes on after it."""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def retry_after(header: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date (one already
    past: 0), at most MAX_RETRY_AFTER_SECONDS. None (no hint) for no header, one that is
    neither, and a number that is negative, infinite or not a number."""
    if not header:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


def printable(text: str) -> str:
    """`text` (from a remote answer: an excerpt of its body, an error description) without its
    control characters but tab and line feed (no NUL, which a PostgreSQL text column refuses,
    and nothing that rewrites a terminal or breaks a log line), and with the phone numbers it
    quotes (a 422's "input": "+33612345678") shown by their last digits, as every log line."""
    return numbers_masked(_CONTROL.sub("", text))
