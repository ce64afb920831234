"""/login and /logout: an employee of the YAML file and the password set with
`agi-daemon user set-password`; failed attempts are rate-limited."""
from __future__ import annotations

import logging

from aiohttp import web

from .auth import LOGIN_COOKIE, SESSION_COOKIE, new_login_token, same_token
from .server import CONTEXT, SESSION_OVER, SESSIONS, SOCKETS, THROTTLE, current_viewer, language, render
from .i18n import translator

log = logging.getLogger(__name__)

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
    ok = await context.users.verify(employee if known else "", password)
    if not (known and ok):
        throttle.failed(*keys)
        log.info("web login failed for %s", who)
        return _login_form(request, t("Wrong employee or password."), status=401)
    throttle.succeeded(*keys)
    token, _ = request.app[SESSIONS].open(employee)
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
    for socket, opened_with in list(request.app[SOCKETS].items()):  # its call windows stop at once
        if token and opened_with == token:
            await socket.close(code=SESSION_OVER, message=b"logged out")
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response
