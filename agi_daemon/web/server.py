"""The daemon's web server (aiohttp): the pages, the JSON API, /metrics and /healthz.

    server = WebServer(context)
    await server.start("127.0.0.1", 0); server.port; await server.close()

Every route but /login, /healthz, /metrics and /static needs a session (pages answer with a
redirect to /login, the API and the WebSocket with 401); /metrics answers only the addresses
of `daemon.web.metrics_allowed_peers`; admin routes need an employee with `admin: true`;
every POST needs the session's CSRF token.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import jinja2
from aiohttp import web

from ..core.model import NAME_MAX_LENGTH, Rules
from ..core.ports import CrmUnavailable
from . import auth
from .auth import SESSION_COOKIE, LoginThrottle, Sessions, Viewer
from .forwarded import client_address, forwarded_scheme
from .i18n import pick_language, translator
from .live import LiveCalls
from .metrics import CONTENT_TYPE, Metrics
from .submissions import Submissions

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PUBLIC = ("/login", "/healthz", "/metrics", "/static/")


@dataclass
class WebContext:
    """What the web edge reads and acts on; built by app.py."""

    rules: Callable[[], Rules]
    settings: Callable[[], Any]  # the running Settings
    crm: Any  # the CRM adapter
    pages: Any  # crm.pages.CrmPages, or None when the CRM is not the embedded one
    users: Any  # crm.users.WebUsers
    live: LiveCalls
    metrics: Metrics
    health: Callable[[], tuple[bool, dict[str, Any]]]
    notifier: Any  # where the call window publishes the records it creates
    # `agi-daemon simulate` for one call: (direction, line, caller, callee) -> (JSON, text)
    simulate: Callable[[str, str, str, str | None], Awaitable[tuple[dict[str, Any], str]]]
    metrics_peers: tuple[Any, ...] = ()
    trusted_proxies: tuple[Any, ...] = ()  # whose X-Forwarded-For names the client (web/forwarded.py)
    outbox: Any = None  # crm.outbox.Outbox: the admin page's outbox section
    submissions: Submissions = field(default_factory=Submissions)  # what the call window's buttons submitted
    tracking: Callable[[], bool] = lambda: True  # whether calls are followed (the AMI or ARI link is up)


class WebServer:
    def __init__(self, context: WebContext) -> None:
        self.context = context
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self.app = build_app(context)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the web server is not started")
        return self._port

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self._port = self._runner.addresses[0][1]
        log.info("web pages on http://%s:%d/", host, self._port)

    async def close(self) -> None:
        if self._runner is None:
            return
        sockets = self.app[SOCKETS]
        for ws in list(sockets):
            await ws.close(code=1001, message=b"daemon stopping")
        await self._runner.cleanup()
        self._runner = None
        await self.context.submissions.close()


# the call windows' live sockets, each with the session token it was opened with
SOCKETS: web.AppKey["weakref.WeakKeyDictionary[web.WebSocketResponse, str]"] = web.AppKey("sockets")
SESSION_OVER = 4401  # the close code of a call window's socket whose session ended (calls.js: to the login)
CONTEXT = web.AppKey("context", WebContext)
SESSIONS = web.AppKey("sessions", Sessions)
THROTTLE = web.AppKey("throttle", LoginThrottle)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
VIEWER = web.RequestKey("viewer", Viewer)


def build_app(context: WebContext) -> web.Application:
    from . import admin, api, calls, crm_pages, login

    app = web.Application(middlewares=[_forwarded, _security, _crm_unavailable], client_max_size=64 * 1024)
    app[CONTEXT] = context
    app[SESSIONS] = Sessions()
    app[THROTTLE] = LoginThrottle()
    app[SOCKETS] = weakref.WeakKeyDictionary()
    app.on_response_prepare.append(_headers)
    app[TEMPLATES] = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                        autoescape=True, trim_blocks=True, lstrip_blocks=True)
    app[TEMPLATES].globals["name_max_length"] = NAME_MAX_LENGTH
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static/", HERE / "static")
    login.routes(app)
    calls.routes(app)
    crm_pages.routes(app)
    admin.routes(app)
    api.routes(app)
    return app


# ---- security ------------------------------------------------------------------------------

@web.middleware
async def _forwarded(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Behind a trusted reverse proxy, `request.remote` is the client's address, not the proxy's."""
    trusted = request.app[CONTEXT].trusted_proxies
    client = client_address(request.remote, request.headers.getall("X-Forwarded-For", ()), trusted)
    scheme = forwarded_scheme(request.remote, request.headers.get("X-Forwarded-Proto"), trusted)
    if client is not None and client != request.remote:
        request = request.clone(remote=client)
    if scheme is not None and scheme != request.scheme:
        request = request.clone(scheme=scheme)  # request.secure: the cookies are sent over HTTPS only
    return await handler(request)


@web.middleware
async def _security(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    path = request.path
    if path.startswith(PUBLIC):
        return await handler(request)
    viewer = current_viewer(request)
    if viewer is None:
        if path.startswith("/api/") or path == "/ws":
            raise web.HTTPUnauthorized(text='{"error": "login required"}', content_type="application/json")
        raise web.HTTPSeeOther("/login")
    if (path.startswith("/admin") or path.startswith("/api/admin")) and not viewer.admin:
        raise web.HTTPForbidden(text="admins only")
    origin = request.headers.get("Origin")
    if origin is not None and origin not in (f"http://{request.host}", f"https://{request.host}"):
        raise web.HTTPForbidden(text="cross-site request refused")  # a WebSocket or a form from elsewhere
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        given = request.headers.get("X-CSRF-Token")
        if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            given = (await request.post()).get("csrf")  # type: ignore[assignment]
        if not auth.same_token(given, viewer.csrf):
            raise web.HTTPForbidden(text="missing or wrong CSRF token")
    request[VIEWER] = viewer
    return await handler(request)


@web.middleware
async def _crm_unavailable(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """A page or an API route that reads or writes the CRM while it does not answer (its
    database stalled, a remote CRM down) answers 503 saying so, not 500 and a traceback."""
    try:
        return await handler(request)
    except CrmUnavailable as exc:
        log.warning("web %s %s: the CRM does not answer (%s)", request.method, request.path, exc)
        text = "the CRM does not answer now: try again in a moment"
        if request.path.startswith("/api/"):
            raise web.HTTPServiceUnavailable(text=json.dumps({"error": text}), content_type="application/json") from None
        raise web.HTTPServiceUnavailable(text=text) from None


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, errors and redirects included (raised, they skip the middlewares'
    return): no sniffing, no framing, scripts and styles of this site only; and nothing a
    page with personal data showed is kept in the browser's cache (Back after a logout on a
    shared desk); the static files are kept, but asked again each time (no-cache: a 304 when
    unchanged), so that a browser never runs the script of an earlier version of the daemon
    against this one's messages."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                "script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
    response.headers.setdefault("Cache-Control", "no-cache" if request.path.startswith("/static/") else "no-store")


def current_viewer(request: web.Request) -> Viewer | None:
    found = request.app[SESSIONS].find(request.cookies.get(SESSION_COOKIE))
    if found is None:
        return None
    employee_id, csrf = found
    employee = request.app[CONTEXT].rules().employees.get(employee_id)
    if employee is None:  # removed from the YAML file since: the session is over
        return None
    return Viewer(employee.id, employee.name, employee.admin, csrf)


def viewer(request: web.Request) -> Viewer:
    return request[VIEWER]


def context(request: web.Request) -> WebContext:
    return request.app[CONTEXT]


# ---- rendering -----------------------------------------------------------------------------

def language(request: web.Request) -> str:
    return pick_language(request.headers.get("Accept-Language"))


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    lang = language(request)
    t = translator(lang)
    page = request.app[TEMPLATES].get_template(template)
    html = page.render(t=t, lang=lang, viewer=request.get(VIEWER), path=request.path,
                       rules=request.app[CONTEXT].rules(), **values)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def render_fragment(request: web.Request, template: str, **values: Any) -> str:
    lang = language(request)
    page = request.app[TEMPLATES].get_template(template)
    return page.render(t=translator(lang), lang=lang, viewer=request.get(VIEWER),
                       rules=request.app[CONTEXT].rules(), **values)


# ---- operations ----------------------------------------------------------------------------

async def healthz(request: web.Request) -> web.Response:
    """Whether the daemon serves, and each link's state, to anyone (a load balancer's probe);
    why a link is down (its last error names hosts and ports) only to the metrics peers."""
    serving, links = context(request).health()
    if not _metrics_peer(request):
        links = {key: value for key, value in links.items() if not key.endswith("_last_error")}
    return web.json_response({"status": "ok" if serving else "unavailable", **links}, status=200 if serving else 503)


async def metrics(request: web.Request) -> web.Response:
    if not _metrics_peer(request):
        raise web.HTTPForbidden(text="not an allowed metrics peer")
    return web.Response(body=context(request).metrics.text(), headers={"Content-Type": CONTENT_TYPE})


def _metrics_peer(request: web.Request) -> bool:
    """Whether the client is one of `daemon.web.metrics_allowed_peers`."""
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return any(address in network for network in context(request).metrics_peers)
