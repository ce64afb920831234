"""POST signed events to the admin's URL; GET the optional lookup URL under the deadline.

Errors translated like every remote CRM's: 2xx is done; 408, 429, 5xx, timeouts and refused
connections are `RemoteCrmUnavailable` (Retry-After honoured, up to MAX_RETRY_AFTER_SECONDS); any other status
(an event's redirection too: none is followed) is `RemoteCrmRejected` with the receiver's status and a short excerpt of its answer (without
control characters; an answer that is not valid UTF-8 is read with its bad bytes replaced). The
URL's query and the HMAC key never reach a log line or an error: only the host and the event.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

import aiohttp

from agi_daemon.core.crm_errors import RemoteCrmRejected, RemoteCrmUnavailable
from agi_daemon.core.model import EntityRef, Match
from agi_daemon.core.phone import masked

from ..remote_answer import printable, retry_after
from . import signing
from .events import WebhookEvent

log = logging.getLogger(__name__)


class WebhookSender:
    def __init__(self, url: str, secret: str, *, lookup_url: str | None = None, timeout_seconds: float = 10.0,
                 session: aiohttp.ClientSession | None = None, clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self._secret = secret
        self._lookup_url = lookup_url
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self.host = _host(url)
        self.last_latency_seconds = 0.0

    def __repr__(self) -> str:
        return f"WebhookSender(host={self.host!r})"

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("WebhookSender.open() was not called")
        return self._session

    async def send(self, event: WebhookEvent) -> None:
        """Deliver one event; the receiver uses `id` to drop a second delivery."""
        body = event.body()
        headers = {"Content-Type": "application/json", "Idempotency-Key": event.id,
                   **signing.headers(self._secret, int(self._clock()), body)}
        where = f"{self.host} {event.type.value} {event.id}"
        started = time.monotonic()
        try:
            async with self._http().post(self._url, data=body, headers=headers, timeout=self._timeout,
                                         allow_redirects=False) as response:
                status = response.status
                hint = response.headers.get("Retry-After")
                text = await response.text(errors="replace")
        except asyncio.TimeoutError:
            log.warning("webhook %s: timed out", where)
            raise RemoteCrmUnavailable(f"{where}: timed out") from None
        except aiohttp.ClientError as exc:
            log.warning("webhook %s: cannot connect (%s)", where, type(exc).__name__)
            raise RemoteCrmUnavailable(f"{where}: cannot connect ({type(exc).__name__})") from None
        finally:
            self.last_latency_seconds = time.monotonic() - started
        self._check(where, status, hint, text)
        log.debug("webhook %s: delivered in %.0f ms", where, self.last_latency_seconds * 1000)

    async def lookup(self, phone: str, deadline_seconds: float | None = None) -> Match | None:
        """Who this E.164 number belongs to, from the lookup URL, within the deadline (a
        call's; None: the events' own time limit, for a lookup no call waits on). None when
        there is no lookup URL or the number is unknown; RemoteCrmUnavailable when the
        receiver is slow or down (the call then goes on as for a new client). The signed
        text is the query string as sent, the lookup URL's own parameters included."""
        if self._lookup_url is None:
            return None
        base, _, own = self._lookup_url.partition("?")
        query = "&".join(part for part in (own, urlencode({"phone": phone})) if part)
        headers = signing.headers(self._secret, int(self._clock()), query.encode())
        where = f"{_host(self._lookup_url)} lookup {masked(phone)}"
        timeout = self._timeout if deadline_seconds is None else aiohttp.ClientTimeout(total=deadline_seconds)
        try:
            # a redirection is followed here (http to https, say): a GET carries no body
            async with self._http().get(f"{base}?{query}", headers=headers, timeout=timeout) as response:
                status = response.status
                hint = response.headers.get("Retry-After")
                text = await response.text(errors="replace")
        except asyncio.TimeoutError:
            raise RemoteCrmUnavailable(f"{where}: no answer within {(timeout.total or 0) * 1000:.0f} ms") from None
        except aiohttp.ClientError as exc:
            raise RemoteCrmUnavailable(f"{where}: cannot connect ({type(exc).__name__})") from None
        if status == 404:
            return None
        self._check(where, status, hint, text)
        return _match(where, text)

    def _check(self, where: str, status: int, hint: str | None, text: str) -> None:
        if 200 <= status < 300:
            return
        if 300 <= status < 400:  # never followed: a POST would become a GET, or the signed body go elsewhere
            log.warning("webhook %s: redirected (HTTP %s): set the URL the redirection names", where, status)
            raise RemoteCrmRejected(f"{where}: HTTP {status}, redirected: the URL must be the receiver's own, "
                                    "not one it redirects from", code=str(status))
        excerpt = " ".join(printable(text.replace(self._secret, "***")).split())[:200]  # the secret first: whole
        if status in (408, 429) or status >= 500:
            log.warning("webhook %s: HTTP %s", where, status)
            raise RemoteCrmUnavailable(f"{where}: HTTP {status} {excerpt}".rstrip(), retry_after_seconds=retry_after(hint))
        log.warning("webhook %s: refused, HTTP %s", where, status)
        raise RemoteCrmRejected(f"{where}: HTTP {status} {excerpt}".rstrip(), code=str(status))


def _host(url: str) -> str:
    """The receiver as log lines and errors name it: host and port, never the URL's
    credentials (`https://user:secret@crm.example.com` names crm.example.com)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port}" if parts.port else host


def _match(where: str, text: str) -> Match | None:
    """{"found": false} or {"found": true, "entity": "contact:12", "responsible": "alice", "name": "..."}."""
    try:
        answer: Any = json.loads(text)
        if not answer.get("found"):
            return None
        responsible = answer.get("responsible")
        return Match(EntityRef.parse(str(answer["entity"])), str(responsible) if responsible else None,
                     str(answer.get("name") or ""))
    except (ValueError, KeyError, AttributeError, TypeError):
        raise RemoteCrmRejected(f"{where}: malformed lookup answer") from None
