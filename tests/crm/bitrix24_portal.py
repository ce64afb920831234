"""An in-test Bitrix24 portal: an aiohttp server on 127.0.0.1, port 0, that answers the REST
methods the daemon uses the way a portal does, and is strict where a portal is lenient.

- It checks each request against the REST documentation (method names, required parameters,
  their types, the PHONE multifield, `batch`'s `cmd[name]=method?query` and `halt`, at most 50
  commands) and notes every departure in `violations` (and answers 400), so a test can assert
  that nothing was sent wrong.
- It enforces the portal's leaky bucket (`per_second`, `burst`): a request arriving while the
  counter is above `burst` gets 503 QUERY_LIMIT_EXCEEDED, counted in `limit_hits`.
- It keeps what it was sent (records by type, registered calls, users, each user's call card
  shown and hidden: `cards`, `cards_of`; a card only for a registered call not finished yet,
  to existing users; each finished call's CRM activity and the records it is bound to:
  `activities`, `bindings_of`, `activity_of`) for assertions, and
  counts requests (`requests`, one per HTTP request; `commands`, one per method run).
- It fails on demand: `fail_next` (any status and error code, with Retry-After, or any raw
  body: a proxy's error page), `fail_refresh_next` (the OAuth server), `time_out_next`,
  `malformed_next`, `expire_token`, `refuse_connections` / `accept_connections`; the OAuth
  server answers slowly with `refresh_answer_delay` (after it rotated the tokens).

Authentication: the inbound webhook `/rest/USER/SECRET/method` and the local application's
`auth` token; `/oauth/token/` refreshes tokens like the portal's OAuth server.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.http_server import InTestHttpServer

KINDS = ("lead", "contact", "company", "deal")
PHONE_TYPES = {"WORK", "MOBILE", "FAX", "HOME", "PAGER", "MAILING", "OTHER"}
COMMON_FIELDS = {"TITLE", "NAME", "LAST_NAME", "SECOND_NAME", "SOURCE_ID", "SOURCE_DESCRIPTION", "ASSIGNED_BY_ID",
                 "ORIGIN_ID", "ORIGINATOR_ID", "OPENED", "COMMENTS", "PHONE"}
FIELDS = {
    "lead": COMMON_FIELDS | {"STATUS_ID", "COMPANY_TITLE"},
    "contact": COMMON_FIELDS | {"COMPANY_ID", "LEAD_ID"},
    "company": COMMON_FIELDS | {"LEAD_ID"},
    "deal": (COMMON_FIELDS - {"PHONE", "NAME", "LAST_NAME", "SECOND_NAME"})
    | {"CATEGORY_ID", "STAGE_ID", "CONTACT_ID", "COMPANY_ID", "LEAD_ID"},
}
STATUS_CODES = {"200", "304", "486", "603", "603-S", "403", "404", "484", "503", "480", "402", "423", "OTHER"}
CALL_TYPES = {1, 2, 3, 4}  # 1 outgoing, 2 incoming, 3 incoming redirected, 4 callback
ENTITY_TYPE_IDS = {1: "lead", 2: "deal", 3: "contact", 4: "company"}  # crm.activity.binding.* entityTypeId
REFERENCE = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]+\])*)")


class Invalid(Exception):
    """A request the documentation does not allow."""

    def __init__(self, message: str, code: str = "INVALID_REQUEST", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class Failure:
    status: int
    code: str | None
    description: str
    retry_after: str | None = None
    body: bytes | None = None  # answered as is (text/html, no charset) instead of the portal's JSON


@dataclass
class RegisteredCall:
    call_id: str
    params: dict[str, Any]
    finished: dict[str, Any] | None = None
    shown_to: set[int] = field(default_factory=set)
    registrations: int = 1
    activity_id: int | None = None  # the CRM activity its finish created


@dataclass
class Activity:
    """A call's CRM activity (created by telephony.externalcall.finish) and the records it is
    bound to, in the order bound: (entityTypeId, entityId), a repeat kept so a test sees it."""

    activity_id: int
    call_id: str
    bindings: list[tuple[int, int]] = field(default_factory=list)


class ScaledTime:
    """A clock that runs `factor` times faster than real time, and a sleep that matches:
    give both to the portal and the client's bucket to run a minute of traffic in seconds."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._origin = time.monotonic()

    def clock(self) -> float:
        return (time.monotonic() - self._origin) * self.factor

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.factor)


def php_parse(query: str) -> dict[str, Any]:
    """PHP's parse_str: `a[b][0][c]=v` -> {"a": {"b": [{"c": "v"}]}}."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        base, _, rest = key.partition("[")
        parts = [base] + (re.findall(r"\[([^\]]*)\]", "[" + rest) if rest else [])
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise Invalid(f"parameter {key} mixes a value and an array")
        node[parts[-1]] = value
    return _lists(root)


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        value = {key: _lists(item) for key, item in value.items()}
        if value and all(key.isdigit() for key in value) and sorted(map(int, value)) == list(range(len(value))):
            return [value[str(index)] for index in range(len(value))]
    return value


def _int(params: dict[str, Any], key: str, *, required: bool = True, where: str = "") -> int | None:
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise Invalid(f"{where}{key} is required")
        return None
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise Invalid(f"{where}{key} must be an integer, got {value!r}")
    return int(value)


def _text(params: dict[str, Any], key: str, *, required: bool = True, where: str = "") -> str | None:
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise Invalid(f"{where}{key} is required")
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise Invalid(f"{where}{key} must be text, got {value!r}")
    return str(value)


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


class Bitrix24Portal(InTestHttpServer):
    def __init__(self, *, per_second: float = 2.0, burst: int = 50, clock: Callable[[], float] = time.monotonic,
                 webhook_user: int = 1, webhook_secret: str = "w3bh00k-s3cr3t-k3y", crm_mode: int = 1,
                 client_id: str = "local.app.1", client_secret: str = "cl13nt-s3cr3t",
                 access_token: str = "acc3ss-t0k3n-0", refresh_token: str = "r3fr3sh-t0k3n-0",
                 webhook_denied: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self.webhook_user = webhook_user
        self.webhook_secret = webhook_secret
        self.crm_mode = crm_mode
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.webhook_denied = {method.lower() for method in webhook_denied}  # application-only methods
        self.expired_tokens: set[str] = set()
        self.refresh_gives_expired_tokens = False  # a broken OAuth server
        self.refresh_answer_delay = 0.0  # seconds a refresh's answer takes once the new pair is issued
        self.records: dict[str, dict[int, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self.calls: dict[str, RegisteredCall] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.violations: list[str] = []
        self.cards: list[tuple[str, str, int]] = []  # ("show" | "hide", CALL_ID, user): each user's call card
        self.activities: dict[int, Activity] = {}  # the finished calls' CRM activities
        self.requests = 0
        self.commands = 0
        self.batches: list[int] = []  # commands per batch request
        self.methods: list[str] = []
        self.limit_hits = 0
        self.refreshes = 0
        self._level = 0.0
        self._at = clock()
        self._failures: list[Failure] = []
        self._refresh_failures: list[Failure] = []
        self._spent: set[str] = set()  # refresh tokens already exchanged
        self.failures_answered = 0  # the failures asked for (fail_next, fail_refresh_next) that were answered
        self._timeouts: list[float] = []
        self._malformed = 0
        self._lost: list[float] = []
        self._ids = {kind: itertools.count(1) for kind in KINDS}
        self._call_ids = itertools.count(1)
        self._activity_ids = itertools.count(1)
        self.add_user(webhook_user, "Admin", inner_phone=None)

    # ---- life ---------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/oauth/token/", self._oauth)
        app.router.add_post("/rest/{user}/{secret}/{method}", self._webhook_call)
        app.router.add_post("/rest/{method}", self._app_call)

    @property
    def webhook_url(self) -> str:
        return f"{self.address}/rest/{self.webhook_user}/{self.webhook_secret}/"

    @property
    def token_url(self) -> str:
        return f"{self.address}/oauth/token/"

    # ---- what a test sets up or breaks --------------------------------------------------

    def add_user(self, user_id: int, name: str, inner_phone: str | None) -> None:
        self.users[user_id] = {"ID": str(user_id), "NAME": name, "ACTIVE": True, "UF_PHONE_INNER": inner_phone}

    def add_record(self, kind: str, fields: dict[str, Any]) -> int:
        record_id = next(self._ids[kind])
        self.records[kind][record_id] = {"ID": str(record_id), **fields}
        return record_id

    def fail_next(self, count: int, status: int = 503, code: str | None = "QUERY_LIMIT_EXCEEDED",
                  description: str = "Too many requests", retry_after: str | None = None,
                  body: bytes | None = None) -> None:
        """The next requests answer `status`: the portal's JSON error `code` (None: an HTML page),
        or `body` as is, in whatever encoding it is in."""
        self._failures.extend(Failure(status, code, description, retry_after, body) for _ in range(count))

    def fail_refresh_next(self, count: int, status: int, body: bytes) -> None:
        """The next token refreshes answer `status` with `body` as is (and refresh nothing)."""
        self._refresh_failures.extend(Failure(status, None, "", None, body) for _ in range(count))

    def time_out_next(self, count: int, seconds: float = 2.0) -> None:
        """Hang on the next requests for `seconds`, then drop them unrun (see lose_answers_next)."""
        self._timeouts.extend([seconds] * count)

    def lose_answers_next(self, count: int, seconds: float = 2.0) -> None:
        """Run the next requests, then answer too late: the client cannot know they were done."""
        self._lost.extend([seconds] * count)

    def malformed_next(self, count: int) -> None:
        self._malformed += count

    def heal(self) -> None:
        """Forget the failures, hangs, lost answers and malformed answers still to come."""
        self._failures.clear()
        self._refresh_failures.clear()
        self._timeouts.clear()
        self._lost.clear()
        self._malformed = 0

    def expire_token(self) -> None:
        self.expired_tokens.add(self.access_token)

    def set_clock(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._at = clock()

    def fill_bucket(self) -> None:
        """Another application just used the whole burst."""
        self._leak()
        self._level = float(self.burst)

    def records_with_origin(self, kind: str, origin_id: str) -> list[dict[str, Any]]:
        return [record for record in self.records[kind].values() if record.get("ORIGIN_ID") == origin_id]

    # ---- HTTP ---------------------------------------------------------------------------

    async def _webhook_call(self, request: web.Request) -> web.Response:
        if request.match_info["user"] != str(self.webhook_user) or request.match_info["secret"] != self.webhook_secret:
            return self._error(401, "INVALID_CREDENTIALS", "Invalid request credentials")
        return await self._rest(request, webhook=True)

    async def _app_call(self, request: web.Request) -> web.Response:
        return await self._rest(request, webhook=False)

    async def _rest(self, request: web.Request, *, webhook: bool) -> web.Response:
        self.requests += 1
        if self._timeouts:  # hangs, then gives up without running the request
            await asyncio.sleep(self._timeouts.pop(0))
            return web.Response(status=504, text="<html>Gateway Time-out</html>")
        if not self._admit():
            self.limit_hits += 1
            return self._error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        if self._failures:
            failure = self._failures.pop(0)
            self.failures_answered += 1
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            if failure.body is not None:
                return _raw(failure)
            if failure.code is None:
                return web.Response(status=failure.status, text="<html>Service unavailable</html>", headers=headers)
            return self._error(failure.status, failure.code, failure.description, headers)
        if self._malformed:
            self._malformed -= 1
            return web.Response(status=200, text='{"result": {"ID": ', content_type="application/json")
        method = request.match_info["method"].removesuffix(".json")
        try:
            params = await self._params(request)
        except (ValueError, Invalid) as exc:
            return self._violation(f"{method}: unreadable parameters: {exc}")
        if not webhook:
            token = params.pop("auth", None)
            if token in self.expired_tokens:
                return self._error(401, "expired_token", "The access token provided has expired.")
            if token != self.access_token:
                return self._error(401, "invalid_token", "The access token provided is invalid.")
        elif "auth" in params:
            return self._violation(f"{method}: auth sent with a webhook URL")
        if webhook and method.lower() in self.webhook_denied:
            return self._error(401, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method")
        try:
            if method.lower() == "batch":
                result = self._batch(params)
            else:
                result = self._run(method, params)
        except Invalid as exc:
            if exc.code == "INVALID_REQUEST":
                return self._violation(f"{method}: {exc}")
            return self._error(exc.status, exc.code, str(exc))
        body = {"result": result, "time": {"start": time.time(), "duration": 0.001}}
        if isinstance(result, list) and method.lower().endswith(".list"):
            body["total"] = len(result)
        if self._lost:
            await asyncio.sleep(self._lost.pop(0))
        return web.json_response(body)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = php_parse(request.query_string)
        text = await request.text()
        if request.content_type == "application/json":
            body = json.loads(text or "{}")
            if not isinstance(body, dict):
                raise Invalid("the JSON body must be an object")
            params.update(body)
        elif text:
            params.update(php_parse(text))
        return params

    def _error(self, status: int, code: str, description: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"error": code, "error_description": description}, status=status, headers=headers)

    def _violation(self, message: str) -> web.Response:
        self.violations.append(message)
        return self._error(400, "INVALID_REQUEST", message)

    def _admit(self) -> bool:
        self._leak()
        if self._level + 1 > self.burst:
            return False
        self._level += 1
        return True

    def _leak(self) -> None:
        now = self.clock()
        self._level = max(0.0, self._level - (now - self._at) * self.per_second)
        self._at = now

    async def _oauth(self, request: web.Request) -> web.Response:
        if self._refresh_failures:
            self.failures_answered += 1
            return _raw(self._refresh_failures.pop(0))
        query = request.query
        if (query.get("grant_type") != "refresh_token" or query.get("client_id") != self.client_id
                or query.get("client_secret") != self.client_secret):
            return web.json_response({"error": "invalid_client", "error_description": "Invalid client"}, status=400)
        if query.get("refresh_token") != self.refresh_token or self.refresh_token in self._spent:
            return web.json_response({"error": "invalid_grant", "error_description": "Invalid refresh token"}, status=400)
        self._spent.add(self.refresh_token)  # single use: a second refresh with it, even at once, is refused
        self.refreshes += 1
        await asyncio.sleep(0.05)  # long enough for concurrent requests to pile up behind the refresh
        self.access_token = f"acc3ss-t0k3n-{self.refreshes}"
        self.refresh_token = f"r3fr3sh-t0k3n-{self.refreshes}"
        if self.refresh_gives_expired_tokens:
            self.expire_token()
        if self.refresh_answer_delay:  # a slow answer: the old refresh token is already dead meanwhile
            await asyncio.sleep(self.refresh_answer_delay)
        return web.json_response({"access_token": self.access_token, "refresh_token": self.refresh_token,
                                  "expires_in": 3600, "member_id": "m1", "domain": f"127.0.0.1:{self.port}"})

    # ---- batch --------------------------------------------------------------------------

    def _batch(self, params: dict[str, Any]) -> dict[str, Any]:
        cmd = params.get("cmd")
        halt = params.get("halt", 0)
        if str(halt) not in ("0", "1", "True", "False", "true", "false"):
            raise Invalid(f"batch: halt must be 0 or 1, got {halt!r}")
        if not isinstance(cmd, (dict, list)) or not cmd:
            raise Invalid("batch: cmd must be a non-empty array of method?query strings")
        commands = cmd if isinstance(cmd, dict) else {str(i): c for i, c in enumerate(cmd)}
        if len(commands) > 50:
            raise Invalid("Max batch length exceeded", code="ERROR_BATCH_LENGTH_EXCEEDED")
        self.batches.append(len(commands))
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for name, text in commands.items():
            if not isinstance(text, str):
                raise Invalid(f"batch: cmd[{name}] must be a method?query string")
            method, _, query = text.partition("?")
            if method.lower() == "batch":
                raise Invalid("batch: a batch cannot run another batch", code="ERROR_BATCH_METHOD_NOT_ALLOWED")
            try:
                command_params = _substitute(php_parse(query), results)
                results[name] = self._run(method, command_params)
            except Invalid as exc:
                if exc.code == "INVALID_REQUEST":
                    self.violations.append(f"batch cmd[{name}] {method}: {exc}")
                errors[name] = {"error": exc.code, "error_description": str(exc)}
                if str(halt) in ("1", "True", "true"):
                    break
        # PHP encodes an empty array as [] (not {}): so does the portal.
        return {"result": results or [], "result_error": errors or [], "result_total": [], "result_next": [],
                "result_time": []}

    # ---- methods ------------------------------------------------------------------------

    def _run(self, method: str, params: dict[str, Any]) -> Any:
        self.commands += 1
        name = method.lower()
        self.methods.append(name)
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "crm" and parts[1] in KINDS:
            kind, action = parts[1], parts[2]
            handler = {"add": self._add, "update": self._update, "list": self._list, "get": self._get}.get(action)
            if handler is not None:
                return handler(kind, params)
        handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "crm.duplicate.findbycomm": self._findbycomm,
            "telephony.externalcall.searchcrmentities": self._search,
            "telephony.externalcall.register": self._register,
            "telephony.externalcall.finish": self._finish,
            "telephony.externalcall.show": self._show,
            "telephony.externalcall.hide": self._hide,
            "crm.activity.binding.add": self._bind,
            "crm.activity.binding.list": self._bindings,
            "user.get": self._user_get,
            "crm.settings.mode.get": lambda params: self.crm_mode,
        }
        if name not in handlers:
            self.violations.append(f"unknown method {method}")
            raise Invalid(f"Method not found: {method}", code="ERROR_METHOD_NOT_FOUND", status=404)
        return handlers[name](params)

    def _fields(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        fields = params.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise Invalid(f"crm.{kind}: fields must be a non-empty object")
        unknown = set(fields) - FIELDS[kind]
        if unknown:
            raise Invalid(f"crm.{kind}: unknown fields {sorted(unknown)}")
        for key in ("ASSIGNED_BY_ID", "CATEGORY_ID", "CONTACT_ID", "COMPANY_ID", "LEAD_ID"):
            if key in fields:
                _int(fields, key, where=f"crm.{kind} fields.")
        for key in ("SOURCE_ID", "ORIGIN_ID", "TITLE", "NAME"):
            if key in fields:
                _text(fields, key, where=f"crm.{kind} fields.")
        if "PHONE" in fields:
            phones = fields["PHONE"]
            if not isinstance(phones, list) or not phones:
                raise Invalid(f"crm.{kind}: PHONE must be a list of {{VALUE, VALUE_TYPE}}")
            for phone in phones:
                if not isinstance(phone, dict) or not isinstance(phone.get("VALUE"), str) or not phone["VALUE"]:
                    raise Invalid(f"crm.{kind}: PHONE items need a VALUE")
                if phone.get("VALUE_TYPE") not in PHONE_TYPES:
                    raise Invalid(f"crm.{kind}: PHONE VALUE_TYPE must be one of {sorted(PHONE_TYPES)}")
                if set(phone) - {"VALUE", "VALUE_TYPE", "ID", "TYPE_ID"}:
                    raise Invalid(f"crm.{kind}: unknown PHONE keys {sorted(set(phone))}")
        return fields

    def _add(self, kind: str, params: dict[str, Any]) -> int:
        fields = self._fields(kind, params)
        if kind == "deal" and "CATEGORY_ID" not in fields:
            raise Invalid("crm.deal.add: CATEGORY_ID is required by this integration (the pipeline)")
        return self.add_record(kind, dict(fields))

    def _update(self, kind: str, params: dict[str, Any]) -> bool:
        record_id = _int(params, "id", where=f"crm.{kind}.update ")
        fields = self._fields(kind, params)
        if record_id not in self.records[kind]:
            raise Invalid("Not found", code="NOT_FOUND", status=400)
        self.records[kind][record_id].update(fields)  # type: ignore[index]
        return True

    def _get(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        record_id = _int(params, "id", where=f"crm.{kind}.get ")
        if record_id not in self.records[kind]:
            raise Invalid("Not found", code="NOT_FOUND", status=400)
        return self.records[kind][record_id]  # type: ignore[index]

    def _list(self, kind: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        filters = params.get("filter", {})
        select = params.get("select", [])
        if not isinstance(filters, dict) or not isinstance(select, list):
            raise Invalid(f"crm.{kind}.list: filter must be an object and select a list")
        unknown = set(filters) - FIELDS[kind] - {"ID"}
        if unknown:
            raise Invalid(f"crm.{kind}.list: unknown filter fields {sorted(unknown)}")
        found = [record for record in self.records[kind].values()
                 if all(str(record.get(key)) == str(value) for key, value in filters.items())]
        return [{key: record.get(key) for key in (select or record)} for record in found]

    def _findbycomm(self, params: dict[str, Any]) -> Any:
        if params.get("type") not in ("PHONE", "EMAIL"):
            raise Invalid("crm.duplicate.findbycomm: type must be PHONE or EMAIL")
        values = params.get("values")
        if not isinstance(values, list) or not values or len(values) > 20:
            raise Invalid("crm.duplicate.findbycomm: values must be a list of 1 to 20 items")
        entity_type = params.get("entity_type")
        if entity_type is not None and entity_type not in ("LEAD", "CONTACT", "COMPANY"):
            raise Invalid("crm.duplicate.findbycomm: entity_type must be LEAD, CONTACT or COMPANY")
        wanted = {_digits(str(value)) for value in values}
        found: dict[str, list[int]] = {}
        for kind in ("lead", "contact", "company"):
            if entity_type and entity_type != kind.upper():
                continue
            ids = [record_id for record_id, record in self.records[kind].items() if self._phones(record) & wanted]
            if ids:
                found[kind.upper()] = ids
        return found or []

    def _phones(self, record: dict[str, Any]) -> set[str]:
        return {_digits(phone.get("VALUE", "")) for phone in record.get("PHONE", []) if isinstance(phone, dict)}

    def _search(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        phone = _digits(_text(params, "PHONE_NUMBER", where="telephony.externalCall.searchCrmEntities ") or "")
        found = []
        for kind in ("contact", "company", "lead"):
            for record_id, record in self.records[kind].items():
                if phone in self._phones(record):
                    assigned = int(record.get("ASSIGNED_BY_ID") or self.webhook_user)
                    user = self.users.get(assigned, {"ID": str(assigned)})
                    found.append({"CRM_ENTITY_TYPE": kind.upper(), "CRM_ENTITY_ID": record_id,
                                  "ASSIGNED_BY_ID": assigned, "NAME": record.get("NAME") or record.get("TITLE"),
                                  "ASSIGNED_BY": {"ID": user["ID"], "NAME": user.get("NAME"),
                                                  "UF_PHONE_INNER": user.get("UF_PHONE_INNER")}})
        return found

    def _user_of(self, params: dict[str, Any], where: str) -> int:
        user_id = _int(params, "USER_ID", required=False, where=where)
        inner = _text(params, "USER_PHONE_INNER", required=False, where=where)
        if user_id is None and inner is None:
            raise Invalid(f"{where}USER_ID or USER_PHONE_INNER is required")
        if user_id is None:
            matches = [uid for uid, user in self.users.items() if user.get("UF_PHONE_INNER") == inner]
            if not matches:
                raise Invalid(f"{where}no user has the internal phone {inner}", code="ERROR_USER_NOT_FOUND")
            user_id = matches[0]
        if user_id not in self.users:
            raise Invalid(f"{where}user {user_id} not found", code="ERROR_USER_NOT_FOUND")
        return user_id

    def _register(self, params: dict[str, Any]) -> dict[str, Any]:
        where = "telephony.externalcall.register "
        user_id = self._user_of(params, where)
        phone = _text(params, "PHONE_NUMBER", where=where)
        call_type = _int(params, "TYPE", where=where)
        if call_type not in CALL_TYPES:
            raise Invalid(f"{where}TYPE must be 1 to 4")
        for flag in ("CRM_CREATE", "SHOW", "ADD_TO_CHAT"):
            if flag in params and str(params[flag]) not in ("0", "1"):
                raise Invalid(f"{where}{flag} must be 0 or 1")
        entity_type = params.get("CRM_ENTITY_TYPE")
        if entity_type is not None and entity_type not in ("CONTACT", "COMPANY", "LEAD", "DEAL"):
            raise Invalid(f"{where}CRM_ENTITY_TYPE must be CONTACT, COMPANY, LEAD or DEAL")
        entity_id = _int(params, "CRM_ENTITY_ID", required=entity_type is not None, where=where)
        if entity_type is not None and entity_id not in self.records[entity_type.lower()]:
            raise Invalid(f"{where}{entity_type} {entity_id} not found", code="ERROR_NOT_FOUND")
        external = _text(params, "EXTERNAL_CALL_ID", required=False, where=where)
        _text(params, "LINE_NUMBER", required=False, where=where)
        for existing in self.calls.values():
            if external and existing.params.get("EXTERNAL_CALL_ID") == external and existing.finished is None:
                existing.registrations += 1
                return self._registered(existing)
        created_lead = None
        if entity_type is None:
            matches = self._search({"PHONE_NUMBER": phone})
            if matches:
                entity_type, entity_id = matches[0]["CRM_ENTITY_TYPE"], matches[0]["CRM_ENTITY_ID"]
            elif str(params.get("CRM_CREATE", "0")) == "1":
                created_lead = self.add_record("lead", {"TITLE": f"Call {phone}", "ASSIGNED_BY_ID": user_id,
                                                        "SOURCE_ID": params.get("CRM_SOURCE", "CALL"),
                                                        "PHONE": [{"VALUE": phone, "VALUE_TYPE": "WORK"}]})
                entity_type, entity_id = "LEAD", created_lead
        call_id = f"externalCall.{next(self._call_ids):08x}"
        call = RegisteredCall(call_id, {**params, "USER_ID": user_id, "CRM_ENTITY_TYPE": entity_type,
                                        "CRM_ENTITY_ID": entity_id, "CRM_CREATED_LEAD": created_lead})
        if str(params.get("SHOW", "1")) == "1":
            call.shown_to.add(user_id)
            self.cards.append(("show", call_id, user_id))
        self.calls[call_id] = call
        return self._registered(call)

    def _registered(self, call: RegisteredCall) -> dict[str, Any]:
        params = call.params
        return {"CALL_ID": call.call_id, "CRM_CREATED_LEAD": params["CRM_CREATED_LEAD"],
                "CRM_ENTITY_TYPE": params["CRM_ENTITY_TYPE"], "CRM_ENTITY_ID": params["CRM_ENTITY_ID"],
                "CRM_CREATED_ENTITIES": ([{"ENTITY_TYPE": "LEAD", "ENTITY_ID": params["CRM_CREATED_LEAD"]}]
                                         if params["CRM_CREATED_LEAD"] else [])}

    def _call(self, params: dict[str, Any], where: str) -> RegisteredCall:
        call_id = _text(params, "CALL_ID", where=where)
        if call_id not in self.calls:
            raise Invalid(f"{where}call {call_id} not found", code="ERROR_NOT_FOUND")
        return self.calls[call_id]  # type: ignore[index]

    def _finish(self, params: dict[str, Any]) -> dict[str, Any]:
        where = "telephony.externalcall.finish "
        call = self._call(params, where)
        user_id = self._user_of(params, where)
        duration = _int(params, "DURATION", where=where)
        status = _text(params, "STATUS_CODE", required=False, where=where)
        if status is not None and status not in STATUS_CODES:
            raise Invalid(f"{where}STATUS_CODE {status} is not a call code")
        if call.finished is None:
            call.finished = {"USER_ID": user_id, "DURATION": duration, "STATUS_CODE": status or "200"}
            call.shown_to.clear()
            call.activity_id = self._log_activity(call)
        return {"CALL_ID": call.call_id, "PORTAL_USER_ID": user_id, "CALL_DURATION": duration,
                "CALL_FAILED_CODE": call.finished["STATUS_CODE"], "CRM_ENTITY_TYPE": call.params["CRM_ENTITY_TYPE"],
                "CRM_ENTITY_ID": call.params["CRM_ENTITY_ID"], "CRM_ACTIVITY_ID": call.activity_id}

    def _log_activity(self, call: RegisteredCall) -> int:
        """The finished call's CRM activity, bound to the record the call was registered on
        and, for a deal, to the deal's contact and company, as the portal does."""
        activity = Activity(next(self._activity_ids), call.call_id)
        kind, record_id = call.params["CRM_ENTITY_TYPE"], call.params["CRM_ENTITY_ID"]
        if kind is not None and record_id is not None:
            type_ids = {name: type_id for type_id, name in ENTITY_TYPE_IDS.items()}
            activity.bindings.append((type_ids[kind.lower()], int(record_id)))
            record = self.records[kind.lower()].get(int(record_id), {})
            for field_name, partner in (("CONTACT_ID", "contact"), ("COMPANY_ID", "company")):
                if kind.lower() == "deal" and str(record.get(field_name) or "").isdigit():
                    activity.bindings.append((type_ids[partner], int(record[field_name])))
        self.activities[activity.activity_id] = activity
        return activity.activity_id

    def _activity(self, params: dict[str, Any], where: str) -> Activity:
        activity_id = _int(params, "activityId", where=where)
        if activity_id not in self.activities:
            raise Invalid(f"{where}activity {activity_id} not found")
        return self.activities[activity_id]  # type: ignore[index]

    def _bind(self, params: dict[str, Any]) -> bool:
        """crm.activity.binding.add {activityId, entityTypeId, entityId}: an existing activity,
        entityTypeId 1 lead, 2 deal, 3 contact, 4 company, an existing record of that type."""
        where = "crm.activity.binding.add "
        activity = self._activity(params, where)
        type_id = _int(params, "entityTypeId", where=where)
        entity_id = _int(params, "entityId", where=where)
        if type_id not in ENTITY_TYPE_IDS:
            raise Invalid(f"{where}entityTypeId {type_id} is not 1 lead, 2 deal, 3 contact or 4 company")
        if entity_id not in self.records[ENTITY_TYPE_IDS[type_id]]:
            raise Invalid(f"{where}{ENTITY_TYPE_IDS[type_id]} {entity_id} not found")
        activity.bindings.append((type_id, entity_id))  # type: ignore[arg-type]
        return True

    def _bindings(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        activity = self._activity(params, "crm.activity.binding.list ")
        return [{"activityId": activity.activity_id, "entityTypeId": type_id, "entityId": entity_id}
                for type_id, entity_id in activity.bindings]

    def activity_of(self, call_id: str) -> Activity | None:
        """The call's CRM activity, once it is finished."""
        activity_id = self.calls[call_id].activity_id
        return None if activity_id is None else self.activities[activity_id]

    def bindings_of(self, call_id: str) -> list[tuple[str, int]]:
        """The records the call's activity is bound to, in order: (kind, id); a repeat shows twice."""
        activity = self.activity_of(call_id)
        return [] if activity is None else [(ENTITY_TYPE_IDS[type_id], entity_id)
                                            for type_id, entity_id in activity.bindings]

    def _card_users(self, params: dict[str, Any], where: str) -> set[int]:
        users = params.get("USER_ID")
        values = users if isinstance(users, list) else [users]
        if users is None or not values:
            raise Invalid(f"{where}USER_ID is required")
        return {_int({"USER_ID": value}, "USER_ID", where=where) or 0 for value in values}

    def _card_call(self, params: dict[str, Any], where: str) -> tuple[RegisteredCall, set[int]]:
        """show/hide: CALL_ID of a registered call not finished yet, USER_ID existing users."""
        call = self._call(params, where)
        if call.finished is not None:
            raise Invalid(f"{where}call {call.call_id} is already finished")
        users = self._card_users(params, where)
        unknown = sorted(users - set(self.users))
        if unknown:
            raise Invalid(f"{where}no user {unknown}")
        return call, users

    def _show(self, params: dict[str, Any]) -> bool:
        call, users = self._card_call(params, "telephony.externalcall.show ")
        call.shown_to |= users
        self.cards.extend(("show", call.call_id, user) for user in sorted(users))
        return True

    def _hide(self, params: dict[str, Any]) -> bool:
        call, users = self._card_call(params, "telephony.externalcall.hide ")
        call.shown_to -= users
        self.cards.extend(("hide", call.call_id, user) for user in sorted(users))
        return True

    def cards_of(self, call_id: str) -> list[tuple[str, int]]:
        """What the call's card did, in order: ("show" | "hide", user)."""
        return [(action, user) for action, shown, user in self.cards if shown == call_id]

    def _user_get(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        filters = params.get("FILTER", params.get("filter", {}))
        if not isinstance(filters, dict):
            raise Invalid("user.get: FILTER must be an object")
        unknown = set(filters) - {"ID", "ACTIVE", "UF_PHONE_INNER", "EMAIL"}
        if unknown:
            raise Invalid(f"user.get: unknown filter fields {sorted(unknown)}")

        def same(have: Any, want: Any) -> bool:
            if isinstance(have, bool):  # ACTIVE: true, "Y" or 1
                return have == (str(want).lower() in ("true", "y", "1"))
            return str(have) == str(want)

        def matches(user: dict[str, Any]) -> bool:
            return all(same(user.get(key), value) for key, value in filters.items())

        return [user for user in self.users.values() if matches(user)]


def _raw(failure: Failure) -> web.Response:
    """A failure's body as is: text/html with no charset, as a proxy's error page often comes."""
    headers = {"Content-Type": "text/html"}
    if failure.retry_after:
        headers["Retry-After"] = failure.retry_after
    return web.Response(status=failure.status, body=failure.body, headers=headers)


def _substitute(params: Any, results: dict[str, Any]) -> Any:
    """`$result[name]` and `$result[name][FIELD]` -> the earlier command's answer."""
    if isinstance(params, dict):
        return {key: _substitute(value, results) for key, value in params.items()}
    if isinstance(params, list):
        return [_substitute(value, results) for value in params]
    if not isinstance(params, str) or "$result[" not in params:
        return params

    def value_of(match: re.Match[str]) -> Any:
        name = match.group(1)
        if name not in results:
            raise Invalid(f"reference to {name}, which has no result", code="ERROR_BATCH_REFERENCE")
        found = results[name]
        for key in re.findall(r"\[([^\]]+)\]", match.group(2)):
            found = found[key] if isinstance(found, dict) else found[int(key)]
        return found

    return REFERENCE.sub(lambda match: str(value_of(match)), params)
