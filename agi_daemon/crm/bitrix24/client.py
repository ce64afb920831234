"""The Bitrix24 REST client: one aiohttp session, the leaky bucket, `batch`, errors translated.

    client = Bitrix24Client(WebhookAuth(url), LeakyBucket(2, 50))
    await client.open()
    lead_id = await client.call("crm.lead.add", {"fields": {...}})
    done = await client.batch([Command("lead", "crm.lead.add", {...}),
                               Command("call", "telephony.externalcall.register",
                                       {"CRM_ENTITY_ID": "$result[lead]", ...})])
    await client.close()

Logs name the portal's host and the method, never a URL, token or secret; every message the
client logs or raises is scrubbed of the secrets it knows, and holds no control character the
portal sent. An answer that is not valid UTF-8 (a proxy's error page) is read with its bad bytes
replaced, so it is classified like any answer that is not the portal's JSON.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import aiohttp

from agi_daemon.core.crm_errors import RemoteCrmRejected, RemoteCrmUnavailable
from agi_daemon.core.ports import CrmError

from .auth import Auth
from .bucket import LeakyBucket
from ..remote_answer import printable, retry_after
from .errors import TokenExpired, command_error, error_of
from .query import build_query

log = logging.getLogger(__name__)

BATCH_LIMIT = 50
"""Commands in one `batch` request: the portal refuses more."""

_REFERENCE = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]+\])*)")


@dataclass(frozen=True)
class Command:
    """One REST call inside a batch. `name` is its key: a later command's parameter
    "$result[name]" (or "$result[name][FIELD]") is replaced by this command's answer."""

    name: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class BatchResult:
    """Each command's answer by name, or its error: RemoteCrmRejected (the portal refused that
    command) or RemoteCrmUnavailable (its request could not be delivered; worth retrying)."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, CrmError] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


class Bitrix24Client:
    def __init__(self, auth: Auth, bucket: LeakyBucket, *, timeout_seconds: float = 10.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        self._auth = auth
        self.bucket = bucket
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session = session
        self._own_session = session is None
        self.host = auth.host
        self.requests = 0
        self.limit_hits = 0  # QUERY_LIMIT_EXCEEDED answers seen (should stay 0)
        self.last_latency_seconds = 0.0

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        # a token refresh in flight ends first: its new pair is saved, not lost with the session
        await self._auth.settle()
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def __repr__(self) -> str:
        return f"Bitrix24Client(host={self.host!r})"

    # ---- one method ---------------------------------------------------------------------

    async def call(self, method: str, params: Mapping[str, Any] | None = None, *, urgent: bool = False) -> Any:
        """The `result` of one REST method. Raises RemoteCrmUnavailable or RemoteCrmRejected.
        `urgent` (a lookup on the call path) passes the writes waiting for the bucket."""
        return (await self.call_answer(method, params, urgent=urgent))["result"]

    async def call_answer(self, method: str, params: Mapping[str, Any] | None = None, *,
                          urgent: bool = False) -> dict[str, Any]:
        """The whole answer (`result`, and `total` / `next` for lists)."""
        for attempt in range(2):
            token = self._auth.token()
            try:
                return await self._post(method, dict(params or {}), token, urgent)
            except TokenExpired as expired:
                if attempt:
                    raise RemoteCrmRejected(self._scrub(f"{expired} (still expired after a refresh)"),
                                            code="expired_token") from None
                log.info("bitrix24 %s %s: token expired, refreshing", self.host, method)
                await self._auth.refresh(self._http(), token)
        raise AssertionError("unreachable")

    # ---- batch --------------------------------------------------------------------------

    async def batch(self, commands: Sequence[Command], *, halt: bool = False) -> BatchResult:
        """Run the commands `BATCH_LIMIT` at a time, in order. A reference to a command of an
        earlier request is filled in here; within one request the portal resolves it."""
        names = [command.name for command in commands]
        if len(set(names)) != len(names):
            raise ValueError("batch command names must be unique")
        done = BatchResult()
        for start in range(0, len(commands), BATCH_LIMIT):
            chunk = commands[start:start + BATCH_LIMIT]
            sendable: list[Command] = []
            for command in chunk:
                try:
                    sendable.append(_resolved(command, done, {c.name for c in chunk}))
                except _Unresolved as missing:
                    # as final as the failure of the command it needs
                    failed = done.errors.get(str(missing))
                    kind = RemoteCrmUnavailable if failed is None or isinstance(failed, RemoteCrmUnavailable) \
                        else RemoteCrmRejected
                    done.errors[command.name] = kind(f"{self.host} {command.method}: needs {missing}, which failed")
            if not sendable:
                continue
            try:
                await self._batch_request(sendable, halt, done)
            except (RemoteCrmUnavailable, RemoteCrmRejected) as exc:
                for command in commands[start:]:
                    if command.name not in done.results:
                        done.errors.setdefault(command.name, exc)
                break
            if halt and done.errors:
                break
        return done

    async def _batch_request(self, chunk: Sequence[Command], halt: bool, done: BatchResult) -> None:
        cmd = {command.name: f"{command.method}?{build_query(command.params)}" for command in chunk}
        answer = await self.call_answer("batch", {"halt": 1 if halt else 0, "cmd": cmd})
        body = answer.get("result")
        if not isinstance(body, dict):
            raise RemoteCrmRejected(f"{self.host} batch: malformed answer (no result object)")
        results = body.get("result") or {}  # PHP sends [] for an empty map
        errors = body.get("result_error") or {}
        if not isinstance(results, (dict, list)) or not isinstance(errors, (dict, list)):
            raise RemoteCrmRejected(f"{self.host} batch: malformed answer")
        results = _as_map(results)
        errors = _as_map(errors)
        for command in chunk:
            where = f"{self.host} {command.method}"
            if command.name in errors:
                error = errors[command.name]
                code = error.get("error") if isinstance(error, dict) else None
                description = error.get("error_description") if isinstance(error, dict) else None
                done.errors[command.name] = command_error(where, self._remote(code), self._remote(description))
            elif command.name in results:
                done.results[command.name] = results[command.name]
            elif halt:
                done.errors[command.name] = RemoteCrmUnavailable(f"{where}: not run (the batch halted)")
            else:
                done.errors[command.name] = RemoteCrmRejected(f"{where}: malformed answer (no result)")

    # ---- the wire -----------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Bitrix24Client.open() was not called")
        return self._session

    async def _post(self, method: str, params: dict[str, Any], token: str | None, urgent: bool) -> dict[str, Any]:
        where = f"{self.host} {method}"
        await self.bucket.acquire(urgent=urgent)
        if token is not None:
            params["auth"] = token
        self.requests += 1
        started = time.monotonic()
        try:
            async with self._http().post(self._auth.endpoint(method), json=params, timeout=self._timeout) as response:
                status = response.status
                header = response.headers.get("Retry-After")
                text = await response.text(errors="replace")
        except asyncio.TimeoutError:
            log.warning("bitrix24 %s: timed out", where)
            raise RemoteCrmUnavailable(f"{where}: timed out") from None
        except aiohttp.ClientError as exc:
            reason = self._scrub(_connection_reason(exc))
            log.warning("bitrix24 %s: %s", where, reason)
            raise RemoteCrmUnavailable(f"{where}: {reason}") from None
        finally:
            self.last_latency_seconds = time.monotonic() - started
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            if status >= 500 or status in (408, 429):
                raise self._failed(where, status, None, None, retry_after(header))
            log.warning("bitrix24 %s: HTTP %s, not a JSON answer", where, status)
            raise RemoteCrmRejected(f"{where}: HTTP {status}, malformed answer (not JSON)")
        if status == 200 and "error" not in answer:
            if "result" not in answer:
                raise RemoteCrmRejected(f"{where}: malformed answer (no result)")
            log.debug("bitrix24 %s: ok in %.0f ms", where, self.last_latency_seconds * 1000)
            return answer
        raise self._failed(where, status, self._remote(answer.get("error")), self._remote(answer.get("error_description")),
                           retry_after(header))

    def _failed(self, where: str, status: int, code: str | None, description: str | None,
                hint: float | None) -> Exception:
        if code == "QUERY_LIMIT_EXCEEDED":
            self.limit_hits += 1
            self.bucket.fill()
            hint = hint if hint is not None else self.bucket.wait_seconds()
        error = error_of(where, status, code, description, hint)
        if not isinstance(error, TokenExpired):
            log.warning("bitrix24 %s", error)
        return error

    def _remote(self, value: Any) -> str | None:
        """A text of the portal's answer (an error code, an error_description) fit for an error
        and a log line: no control character, no secret; None when there is none."""
        return (printable(self._scrub(str(value))) or None) if value else None  # secrets first: whole

    def _scrub(self, text: str) -> str:
        for secret in self._auth.secrets():
            if secret:
                text = text.replace(secret, "***")
        return text


def _connection_reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused or unreachable"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the portal closed the connection"
    return f"connection failed ({type(exc).__name__})"


def _as_map(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return {str(key): item for key, item in value.items()}


class _Unresolved(Exception):
    pass


def _resolved(command: Command, done: BatchResult, same_request: set[str]) -> Command:
    """The command with references to earlier requests' answers filled in."""

    def fill(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: fill(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [fill(item) for item in value]
        if not isinstance(value, str) or "$result[" not in value:
            return value

        def lookup(match: re.Match[str]) -> Any:
            name = match.group(1)
            if name in same_request:
                return None  # the portal resolves it
            if name not in done.results:
                raise _Unresolved(name)
            found = done.results[name]
            for key in re.findall(r"\[([^\]]+)\]", match.group(2)):
                found = found[key] if isinstance(found, Mapping) else found[int(key)]
            return found

        whole = _REFERENCE.fullmatch(value)
        if whole is not None:
            found = lookup(whole)
            return value if found is None else found
        return _REFERENCE.sub(lambda m: value[m.start():m.end()] if (v := lookup(m)) is None else str(v), value)

    return Command(command.name, command.method, fill(command.params))
