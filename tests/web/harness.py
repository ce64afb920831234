"""The whole daemon with its web server, employees with passwords, and a headless Chromium.

    path = web_config(tmp_path, ami=...)                     # alice, bob agents; carol admin
    async with running_daemon(sandbox, path, crm) as daemon:
        await set_passwords(crm)
        async with chromium() as browser:
            page = await logged_in(browser, daemon, "alice")

Chromium is Debian's (scripts/browser-sandbox.sh installs it, `make test` runs that), driven
by Playwright through executable_path: Playwright never downloads a browser of its own.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


import aiohttp
import pytest

from agi_daemon.crm.users import WebUsers, hash_password
from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import write_config

CHROMIUM = os.environ.get("AGI_DAEMON_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-333"}
SCREENSHOTS = Path(os.environ.get("AGI_DAEMON_SCREENSHOTS", "var/screenshots"))


def web_config(directory: Path, *, ami: tuple[int, str, str] | None = None, metrics_peers: str = '["127.0.0.1"]',
               **options) -> Path:
    """The test PBX of tests/daemon_harness.py, plus carol (an admin without a phone) and
    the web server's /metrics peers. Without `ami`, AMI points at a closed port."""
    path = write_config(directory, ami=ami or (closed_port(), "agi-daemon", "unused"), **options)
    text = path.read_text()
    text = text.replace("employees:\n", "employees:\n  carol: {name: Carol Petit, admin: true}\n", 1)
    text = text.replace('web: {listen: "127.0.0.1:0"}',
                        f'web: {{listen: "127.0.0.1:0", metrics_allowed_peers: {metrics_peers}}}', 1)
    path.write_text(text)
    return path


async def set_passwords(crm) -> None:
    users = WebUsers(crm)
    for employee, password in PASSWORDS.items():
        await users.set_password_hash(employee, hash_password(password))


def base_url(daemon) -> str:
    return f"http://127.0.0.1:{daemon.web_port}"


async def http_login(session: aiohttp.ClientSession, daemon, employee: str, password: str | None = None,
                     language: str = "en") -> aiohttp.ClientResponse:
    """Log in as a browser would: GET the form (its CSRF cookie), POST it back."""
    url = base_url(daemon)
    async with session.get(f"{url}/login", headers={"Accept-Language": language}) as page:
        html = await page.text()
    token = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    form = {"csrf": token, "employee": employee, "password": password or PASSWORDS[employee]}
    async with session.post(f"{url}/login", data=form, allow_redirects=False) as response:
        await response.read()
        return response


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def chromium_reason() -> str | None:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is missing (bash scripts/browser-sandbox.sh installs Debian's chromium)"
    return None


@contextlib.asynccontextmanager
async def chromium():
    reason = chromium_reason()
    if reason is not None:
        if os.environ.get("AGI_DAEMON_REQUIRE_ASTERISK") == "1":
            pytest.fail(f"AGI_DAEMON_REQUIRE_ASTERISK=1 but {reason}")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def logged_in(browser, daemon, employee: str, *, locale: str = "en-GB", timezone: str | None = None,
                    url: str | None = None):
    """A new browser context (its own cookies; in the time zone `timezone`, else the
    machine's) with `employee` logged in, on the call window (at `url`: the daemon's web
    server, or a proxy in front of it)."""
    options = {"timezone_id": timezone} if timezone else {}
    context = await browser.new_context(locale=locale, viewport={"width": 1100, "height": 700}, **options)
    page = await context.new_page()
    await page.goto(f"{url or base_url(daemon)}/login")
    await page.fill("input[name=employee]", employee)
    await page.fill("input[name=password]", PASSWORDS[employee])
    await page.click("button[type=submit]")
    await page.wait_for_url("**/calls")
    await page.wait_for_selector("#live.on, #live.untracked")  # the WebSocket is open: live updates flow
    return page


async def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
