"""CRM failures with the details a remote CRM gives: how long to wait, and the CRM's own code.

Both subclass the port's errors, so whoever handles `CrmUnavailable` / `CrmRejected` handles
these too; the outbox reads `retry_after_seconds` to honour the remote's `Retry-After`.
"""
from __future__ import annotations

from .ports import CrmRejected, CrmUnavailable


class RemoteCrmUnavailable(CrmUnavailable):
    """The remote CRM is down, overloaded or slow: retry later, after `retry_after_seconds`
    when the CRM said how long (None: the caller's own backoff decides)."""

    def __init__(self, message: str, *, retry_after_seconds: float | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.code = code


class RemoteCrmRejected(CrmRejected):
    """The remote CRM refused the request for good (no access, wrong credentials, a malformed
    answer): `code` is the CRM's error code when it gave one."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
