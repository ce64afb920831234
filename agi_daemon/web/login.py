"""/login and /logout: an employee of the YAML file and the password set with
`agi-daemon user set-password`; failed attempts are rate-limited."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..core.ports import CrmError

from .auth import LOGIN_COOKIE, SESSION_COOKIE, new_login_token, same_token
from .server import CONTEXT, SESSION_OVER, SESSIONS, SOCKETS, THROTTLE, current_viewer, language, render
from .i18n import translator

log = logging.getLogger(__name__)

PASSWORD_CHECK_SECONDS = 5.0  # how soon a password set again ends the sessions opened with the old one

def routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", home)


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/calls")


def _login_form(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE) or new_login_token()
    response = render(request, "login.html", status=status, login_token=token, error=error)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/login", secure=request.secure)
    return response


async def login_page(request: web.Request) -> web.Response:
    if current_viewer(request) is not None:
        raise web.HTTPSeeOther("/calls")
    return _login_form(request)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    if not same_token(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE)):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")
    t = translator(language(request))
    employee = str(form.get("employee", "")).strip()
    password = str(form.get("password", ""))
    throttle = request.app[THROTTLE]
    context = request.app[CONTEXT]
    known = employee in context.rules().employees
    # an employee's id counts its failures; anything else typed is counted by its address only
    keys = (f"address:{request.remote}",) + ((f"employee:{employee}",) if known else ())
    # What was typed as the employee is named in the log only when it is an employee's id: it
    # may be a password typed in the wrong box.
    who = repr(employee) if known else f"an unknown employee id from {request.remote}"
    if not throttle.allowed(*keys):
        log.warning("web login for %s refused: too many failed attempts", who)
        return _login_form(request, t("Too many attempts, try again in a few minutes."), status=429)
    if context.users is None:  # no store for passwords (a CRM other than the embedded one)
        return _login_form(request, t("Wrong employee or password."), status=401)
    password_stamp = await context.users.verify(employee if known else "", password)
    if not (known and password_stamp):
        throttle.failed(*keys)
        log.info("web login failed for %s", who)
        return _login_form(request, t("Wrong employee or password."), status=401)
    throttle.succeeded(*keys)
    token, _ = request.app[SESSIONS].open(employee, password_stamp)
    response = web.HTTPSeeOther("/calls")
    # Secure when the browser came over HTTPS (through the proxy, X-Forwarded-Proto): the
    # session never crosses the network in clear, an http:// bookmark included
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/", secure=request.secure)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    log.info("web login: %s", employee)
    raise response


async def logout(request: web.Request) -> web.Response:
    token = request.cookies.get(SESSION_COOKIE)
    request.app[SESSIONS].close(token)
    if token:
        await _close_call_windows(request.app, {token}, b"logged out")
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def end_sessions_of_changed_passwords(app: web.Application, every: float = PASSWORD_CHECK_SECONDS) -> None:
    """Every `every` seconds while sessions are open, end those whose employee's password was
    set again since they logged in (`agi-daemon user set-password`, run after a password
    leaked, perhaps on another daemon sharing the store): their call windows go to the login
    at once. A store that cannot be read is tried again at the next turn, said once."""
    users = app[CONTEXT].users
    sessions = app[SESSIONS]
    if users is None:  # no store for passwords: nobody logs in
        return
    failing: str | None = None
    while True:
        await asyncio.sleep(every)
        employees = sessions.employees()
        if not employees:
            continue
        asked_at = sessions.now()
        try:
            current = await users.stamps(employees)
        except Exception as exc:  # noqa: BLE001  (the store's, or a bug: never the daemon's end)
            if failing != str(exc):
                if isinstance(exc, CrmError):
                    log.warning("web sessions: cannot read the passwords to end those set again (%s); "
                                "trying again every %g s", exc, every)
                else:
                    log.exception("web sessions: reading the passwords failed; trying again every %g s", every)
            failing = str(exc)
            continue
        failing = None
        ended = sessions.end_changed(current, employees, asked_at)
        if ended:
            log.info("web: %d session(s) ended, their password set again", len(ended))
            await _close_call_windows(app, set(ended), b"password changed: log in again")


async def _close_call_windows(app: web.Application, tokens: set[str], why: bytes) -> None:
    """Close the live sockets of the sessions `tokens` (SESSION_OVER: calls.js goes to the login)."""
    for socket, opened_with in list(app[SOCKETS].items()):
        if opened_with in tokens:
            await socket.close(code=SESSION_OVER, message=why)
