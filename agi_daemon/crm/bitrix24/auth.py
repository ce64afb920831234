"""How requests reach a portal: an inbound webhook URL, or a local application's OAuth tokens.

Neither ever shows its secret: `repr()` and `str()` give the portal's host only, and
`secrets()` lists the values the client scrubs from any text it logs or raises.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from agi_daemon.core.crm_errors import RemoteCrmRejected, RemoteCrmUnavailable

from ..remote_answer import printable

log = logging.getLogger(__name__)

_WEBHOOK = re.compile(r"(https?://[^/\s]+)/rest/(\d+)/([^/\s]+)/?")


class WebhookAuth:
    """An inbound webhook: https://PORTAL/rest/USER_ID/SECRET/ (the method name follows)."""

    def __init__(self, url: str) -> None:
        match = _WEBHOOK.fullmatch(url.strip())
        if match is None:
            raise ValueError("a Bitrix24 inbound webhook URL looks like https://PORTAL/rest/USER_ID/SECRET/")
        self._base = f"{match.group(1)}/rest/{match.group(2)}/{match.group(3)}/"
        self._secret = match.group(3)
        self.host = urlsplit(match.group(1)).netloc
        self.user_id = int(match.group(2))

    def endpoint(self, method: str) -> str:
        return f"{self._base}{method}.json"

    def token(self) -> str | None:
        return None  # the URL itself authenticates

    def secrets(self) -> tuple[str, ...]:
        return (self._secret,)

    async def refresh(self, session: aiohttp.ClientSession, seen: str | None) -> None:
        raise RemoteCrmRejected(f"{self.host}: the webhook was refused as expired: create a new inbound webhook",
                                code="expired_token")

    async def settle(self) -> None:
        pass  # nothing is ever refreshed

    def __repr__(self) -> str:
        return f"WebhookAuth(host={self.host!r})"


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str

    def __repr__(self) -> str:
        return "Tokens(***)"


def read_tokens(path: Path) -> Tokens:
    """The tokens file: JSON with access_token and refresh_token (as the portal's OAuth
    server answers them)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Tokens(str(data["access_token"]), str(data["refresh_token"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RemoteCrmRejected(f"cannot read the Bitrix24 tokens file {path}: {type(exc).__name__}") from None


def write_tokens(path: Path, tokens: Tokens, extra: dict[str, Any] | None = None) -> None:
    """Replace the tokens file atomically (temp file, fsync, rename), readable by its owner
    only: a crash leaves the old tokens or the new ones, never half a file. The file keeps its
    owner: a command run as root (`agi-daemon simulate`) must not leave the daemon's user a
    file it cannot read."""
    data = {**(extra or {}), "access_token": tokens.access_token, "refresh_token": tokens.refresh_token}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        owner: tuple[int, int] | None = (path.stat().st_uid, path.stat().st_gid)
    except FileNotFoundError:
        owner = None
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            with contextlib.suppress(PermissionError):  # only root may give a file away
                os.fchown(fd, *owner)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself made durable
    except OSError:
        pass  # some file systems cannot sync a directory (EINVAL): the file is in place all the same
    finally:
        os.close(directory)


DEFAULT_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"
REFRESH_HTTP_S = 10.0  # the OAuth server's answer to a refresh
RACE_WAIT_S = 1.0  # a refused refresh: how long before the file is read for another process's new pair
# How long a request, or the client's close, waits for a refresh: two exchanges (the second
# after a refusal, from another process's pair), the wait between them, the file read and written.
REFRESH_WAIT_S = 2 * REFRESH_HTTP_S + RACE_WAIT_S + 4.0


class OAuthAuth:
    """A local application: the access token goes in `auth`; when the portal answers
    `expired_token`, the refresh token buys a new pair (once, however many requests saw the
    expiry at the same time) and the tokens file is rewritten.

    Bitrix24 invalidates the old refresh token as soon as it issues a new pair, so a refresh
    is never abandoned half-way: it runs as a task of its own, which the requests waiting
    for it share and which their cancellation (a lookup's deadline) does not cancel. A
    refresh abandoned after the OAuth server answered would leave only a dead refresh token:
    every later refresh refused (invalid_grant) until the application is reinstalled."""

    def __init__(self, portal: str, client_id: str, client_secret: str, tokens_file: Path,
                 token_url: str = DEFAULT_TOKEN_URL, *,
                 save: Callable[[Path, Tokens, dict[str, Any]], None] | None = None) -> None:
        """`save` writes the tokens file (write_tokens; a test's may fail as a full disk does)."""
        parts = urlsplit(portal)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("portal must be the portal's address, such as https://example.bitrix24.com")
        self._portal = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self._client_id = client_id
        self._client_secret = client_secret
        self._tokens_file = tokens_file
        self._token_url = token_url
        self._save = save or write_tokens
        self._tokens = read_tokens(tokens_file)
        self._file_refresh = self._tokens.refresh_token  # the file's, when this process last read or wrote it
        self._previous: Tokens | None = None
        self._lock = asyncio.Lock()
        self._refreshing: dict[str, asyncio.Task[None]] = {}  # by the expired access token it replaces
        self.refreshes = 0

    def endpoint(self, method: str) -> str:
        return f"{self._portal}/rest/{method}.json"

    def token(self) -> str | None:
        return self._tokens.access_token

    def secrets(self) -> tuple[str, ...]:
        old = (self._previous.access_token, self._previous.refresh_token) if self._previous else ()
        return (self._client_secret, self._tokens.access_token, self._tokens.refresh_token, *old)

    async def refresh(self, session: aiohttp.ClientSession, seen: str | None) -> None:
        """Get a new token pair unless another request already did since `seen` was used.
        Returns when the refresh is done, or raises its failure; a caller cancelled meanwhile
        leaves the refresh running to its end (see the class)."""
        task = self._refreshing.get(seen or "")
        if task is None:
            if seen is None or self._tokens.access_token != seen:
                return  # another request refreshed it already
            task = asyncio.create_task(self._refresh(session, seen), name=f"bitrix24 {self.host} token refresh")
            self._refreshing[seen] = task
            task.add_done_callback(lambda done: self._refreshed(seen, done))
        try:
            async with asyncio.timeout(REFRESH_WAIT_S):
                await asyncio.shield(task)
        except TimeoutError:
            raise RemoteCrmUnavailable(f"{self.host}: the OAuth token refresh takes more than {REFRESH_WAIT_S:g} s") \
                from None

    def _refreshed(self, seen: str, done: asyncio.Task[None]) -> None:
        if self._refreshing.get(seen) is done:
            del self._refreshing[seen]
        if not done.cancelled():
            done.exception()  # raised to the callers still waiting; with none left, it is no one's

    async def settle(self) -> None:
        """Wait (bounded) for the refreshes in flight: the client closes its session only once
        a new token pair is saved, or its refresh has failed."""
        if self._refreshing:
            await asyncio.wait(list(self._refreshing.values()), timeout=REFRESH_WAIT_S)

    async def _refresh(self, session: aiohttp.ClientSession, seen: str) -> None:
        async with self._lock:  # one refresh at a time: the tokens file is written in order
            if self._tokens.access_token != seen:
                return
            # Another process of this application (`agi-daemon simulate`, `check-config
            # --online`, a fail-over daemon) may have refreshed since: its pair is in the file,
            # and the refresh token held here is dead. The refresh then starts from the file's
            # (whose access token may have expired meanwhile too).
            self._take_newer(await self._read_file())
            try:
                await self._exchange(session)
            except RemoteCrmRejected:
                # refused: another process may have refreshed this very pair a moment before;
                # its new pair reaches the file within moments
                await asyncio.sleep(RACE_WAIT_S)
                if not self._take_newer(await self._read_file()):
                    raise
                await self._exchange(session)

    async def _read_file(self) -> Tokens | None:
        try:
            return await asyncio.to_thread(read_tokens, self._tokens_file)
        except RemoteCrmRejected:
            return None  # unreadable now: the pair held here stays

    def _take_newer(self, written: Tokens | None) -> bool:
        """Take the file's pair when another process wrote it since this one last read or
        wrote the file (not when this process's own write failed: the file is only older)."""
        if written is None or written.refresh_token == self._file_refresh:
            return False
        log.info("bitrix24 %s: another process refreshed the tokens; refreshing from its pair", self.host)
        self._previous, self._tokens, self._file_refresh = self._tokens, written, written.refresh_token
        return True

    async def _exchange(self, session: aiohttp.ClientSession) -> None:
        """The refresh token held here for a new pair, kept in memory and in the tokens file."""
        params = {"grant_type": "refresh_token", "client_id": self._client_id,
                  "client_secret": self._client_secret, "refresh_token": self._tokens.refresh_token}
        try:
            async with session.get(self._token_url, params=params,
                                   timeout=aiohttp.ClientTimeout(total=REFRESH_HTTP_S)) as response:
                status = response.status
                text = await response.text(errors="replace")  # a proxy's page may not be UTF-8
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise RemoteCrmUnavailable(f"{self.host}: cannot refresh the OAuth token: {type(exc).__name__}") from None
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if status >= 500 or status in (408, 429):
            raise RemoteCrmUnavailable(f"{self.host}: the OAuth server answered HTTP {status}")
        if not isinstance(answer, dict) or "access_token" not in answer or "refresh_token" not in answer:
            code = (printable(str(answer.get("error") or "")) or None) if isinstance(answer, dict) else None
            raise RemoteCrmRejected(
                f"{self.host}: the token refresh was refused (HTTP {status}, {code or 'malformed answer'}): "
                "reinstall the application to get new tokens", code=code)
        old = self._tokens
        self._tokens = Tokens(str(answer["access_token"]), str(answer["refresh_token"]))
        extra = {key: answer[key] for key in ("expires_in", "member_id", "domain") if key in answer}
        try:
            await asyncio.to_thread(self._save, self._tokens_file, self._tokens, extra)
        except OSError as exc:
            # the new pair works until a restart; the old refresh token no longer does
            log.error("bitrix24 %s: cannot save the refreshed tokens to %s (%s): after a restart, reinstall "
                      "the application", self.host, self._tokens_file, exc.strerror or type(exc).__name__)
        else:
            self._file_refresh = self._tokens.refresh_token
        self.refreshes += 1
        self._previous = old  # still scrubbed from messages for a while

    def __repr__(self) -> str:
        return f"OAuthAuth(host={self.host!r})"


Auth = WebhookAuth | OAuthAuth
