"""ARI errors, translated at the edge: callers never see aiohttp's."""
from __future__ import annotations


class AriError(Exception):
    """Any ARI failure."""


class AriUnavailable(AriError):
    """Asterisk did not answer, or answered 503 (still booting)."""


class AriRefused(AriError):
    """Asterisk answered an HTTP error: `status` (401 a wrong password, 404 a channel gone ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
