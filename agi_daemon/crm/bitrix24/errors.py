"""A portal's answer -> the CRM port's errors (the edge translates, nothing above sees HTTP).

- unavailable (retry later): HTTP 408, 429, 5xx; QUERY_LIMIT_EXCEEDED, OPERATION_TIME_LIMIT and
  the portal's internal errors whatever the status; timeouts and refused connections;
- expired token: refreshed, then the request is made once more;
- rejected (a retry cannot fix it): any other 4xx or error code (ACCESS_DENIED, WRONG_AUTH_TYPE,
  INVALID_CREDENTIALS, ...), and an answer that is not the JSON Bitrix24 always sends.
"""
from __future__ import annotations

from agi_daemon.core.crm_errors import RemoteCrmRejected, RemoteCrmUnavailable
from agi_daemon.core.ports import CrmError

RETRYABLE_CODES = frozenset({
    "QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER",
    "PORTAL_DELETED_TEMPORARILY", "TOO_MANY_REQUESTS",
})
EXPIRED_CODES = frozenset({"expired_token"})


class TokenExpired(Exception):
    """The portal answered `expired_token`: refresh, then try once more (internal to the client)."""


def error_of(where: str, status: int, code: str | None, description: str | None,
             retry_after_seconds: float | None = None) -> CrmError | TokenExpired:
    """The error for a portal's failed answer; `where` is "host method" (never a URL)."""
    text = f"{where}: HTTP {status}"
    if code:
        text += f" {code}"
    if description:
        text += f": {description}"
    if code in EXPIRED_CODES:
        return TokenExpired(text)
    if code in RETRYABLE_CODES or status in (408, 429) or status >= 500:
        return RemoteCrmUnavailable(text, retry_after_seconds=retry_after_seconds, code=code)
    return RemoteCrmRejected(text, code=code)


def command_error(where: str, code: str | None, description: str | None) -> CrmError:
    """One command of a batch failed (the batch itself answered 200)."""
    text = f"{where}: {code or 'error'}" + (f": {description}" if description else "")
    if code in RETRYABLE_CODES:
        return RemoteCrmUnavailable(text, code=code)
    return RemoteCrmRejected(text, code=code)
