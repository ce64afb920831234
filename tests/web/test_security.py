"""Who may see what: every page and API route needs a login, forms need the CSRF token,
agents read only their own calls, logins are rate-limited, /metrics answers only its peers."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from datetime import UTC, datetime, timedelta

import aiohttp


from agi_daemon.core.model import CallRecord, Direction, Disposition
from agi_daemon.web.login import PASSWORD_CHECK_SECONDS
from tests.daemon_harness import LYON, PARIS, UNKNOWN, running_daemon
from tests.web.harness import PASSWORDS, base_url, http_login, new_session, set_passwords, web_config

PUBLIC = {"/login", "/healthz", "/metrics"}
SAMPLE = {"kind": "leads", "type": "lead", "id": "1", "linkedid": "some-call", "filename": "style.css"}


def _routes(daemon) -> list[tuple[str, str]]:
    """(method, path) of every route of the web server, parameters filled with samples."""
    found = []
    for route in daemon.parts.web.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if not path or route.method == "HEAD" or path.startswith("/static"):
            continue
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: SAMPLE[m.group(1)], path)
        found.append((route.method, path))
    return found


async def test_unauthenticated_request_to_every_page_and_api_route_is_refused(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        routes = _routes(daemon)
        assert len(routes) > 20  # the table is really walked
        async with new_session() as http:
            for method, path in routes:
                if path in PUBLIC:
                    continue
                async with http.request(method, base_url(daemon) + path, allow_redirects=False) as response:
                    body = await response.text()
                    if path.startswith("/api/") or path == "/ws":
                        assert response.status == 401, (method, path, response.status)
                    else:
                        assert response.status == 303 and response.headers["Location"] == "/login", (method, path)
                    assert "csrf" not in body


async def test_form_post_without_csrf_token_is_refused(tmp_path, crm):
    lead = await crm.add_record("lead", "Dupont", UNKNOWN, "alice")
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with new_session() as http:
            assert (await http_login(http, daemon, "alice")).status == 303
            url = f"{base_url(daemon)}/crm/lead/{lead['id']}"
            async with http.post(url, data={"name": "Renamed", "responsible": "bob"}, allow_redirects=False) as refused:
                assert refused.status == 403
            async with http.post(url, data={"name": "Renamed", "responsible": "bob", "csrf": "forged"},
                                 allow_redirects=False) as forged:
                assert forged.status == 403
            async with http.get(f"{base_url(daemon)}/api/me") as me:
                token = (await me.json())["csrf"]
            async with http.post(url, data={"name": "Renamed", "responsible": "bob", "csrf": token},
                                 allow_redirects=False) as accepted:
                assert accepted.status == 303
    [after] = await crm.list_records("leads")
    assert (after["name"], after["responsible"]) == ("Renamed", "bob")


async def test_login_form_without_its_csrf_token_is_refused(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with new_session() as http:
            form = {"employee": "alice", "password": "alice-password-1"}
            async with http.post(f"{base_url(daemon)}/login", data=form, allow_redirects=False) as response:
                assert response.status == 403
                assert "agi_daemon_session" not in response.cookies


def _call(linkedid: str, employee: str, line: str = PARIS, start: datetime | None = None) -> CallRecord:
    """An answered call from UNKNOWN, logged for `employee` (started 5 minutes ago by default)."""
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    return CallRecord(linkedid=linkedid, direction=Direction.INCOMING, line=line, number=UNKNOWN,
                      disposition=Disposition.ANSWERED, started_at=start, ended_at=start + timedelta(seconds=30),
                      answered_at=start + timedelta(seconds=3), answered_by=employee, employees=(employee,),
                      ring_seconds=3, talk_seconds=27)


async def test_agent_cannot_read_another_agents_calls_through_the_api(tmp_path, crm):
    await crm.log_call(_call("call-of-alice", "alice"))
    await crm.log_call(_call("call-of-bob", "bob", LYON))
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        url = base_url(daemon)
        async with new_session() as alice, new_session() as carol:
            await http_login(alice, daemon, "alice")
            await http_login(carol, daemon, "carol")
            async with alice.get(f"{url}/api/calls") as mine:
                assert [c["linkedid"] for c in await mine.json()] == ["call-of-alice"]
            async with alice.get(f"{url}/api/calls?employee=bob") as asked_for_bob:
                assert [c["linkedid"] for c in await asked_for_bob.json()] == ["call-of-alice"]
            async with alice.get(f"{url}/api/calls/call-of-bob") as other:
                assert other.status == 404
            async with alice.get(f"{url}/api/calls/call-of-alice") as own:
                assert own.status == 200 and (await own.json())["answered_by"] == "alice"
            async with alice.get(f"{url}/api/admin/lines") as admin_only:
                assert admin_only.status == 403
            async with carol.get(f"{url}/api/calls") as everything:  # carol is an admin
                assert sorted(c["linkedid"] for c in await everything.json()) == ["call-of-alice", "call-of-bob"]


async def test_one_call_of_a_store_shared_by_two_pbxs_is_this_pbxs_unless_the_api_names_the_other(tmp_path, crm):
    """Two Asterisks numbered two calls alike: the API's linkedid is this daemon's call."""
    await crm.log_call(_call("pbx-a:1700000000.7", "alice"))
    await crm.log_call(_call("pbx-b:1700000000.7", "alice", LYON))
    async with running_daemon(None, web_config(tmp_path, pbx_id="pbx-a"), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        url = base_url(daemon)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            async with alice.get(f"{url}/api/calls/1700000000.7") as ours:
                assert ours.status == 200
                assert (await ours.json())["pbx"] == "pbx-a" and (await ours.json())["line"] == PARIS
            async with alice.get(f"{url}/api/calls/1700000000.7?pbx=pbx-b") as theirs:
                assert theirs.status == 200
                assert (await theirs.json())["pbx"] == "pbx-b" and (await theirs.json())["line"] == LYON
            async with alice.get(f"{url}/api/calls/1700000000.7?pbx=pbx-c") as nowhere:
                assert nowhere.status == 404

async def test_repeated_wrong_passwords_lock_the_login_for_a_while(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with new_session() as http:
            statuses = [(await http_login(http, daemon, "alice", "wrong-password")).status for _ in range(5)]
            assert statuses == [401] * 5
            locked = await http_login(http, daemon, "alice")  # the right password, too late
            assert locked.status == 429
            async with http.get(f"{base_url(daemon)}/api/me") as me:
                assert me.status == 401


async def test_unknown_employee_and_wrong_password_are_refused_alike(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with new_session() as http:
            assert (await http_login(http, daemon, "mallory", "whatever-password")).status == 401
            assert (await http_login(http, daemon, "bob", "not-bobs-password")).status == 401
            accepted = await http_login(http, daemon, "bob")
            assert accepted.status == 303
            [cookie] = [c for c in accepted.headers.getall("Set-Cookie") if c.startswith("agi_daemon_session=")]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


async def test_a_password_typed_in_the_employee_box_never_reaches_the_log(tmp_path, crm, caplog):
    caplog.set_level(logging.DEBUG)
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with new_session() as http:
            assert (await http_login(http, daemon, "bob", "not-bobs-password")).status == 401
            statuses = [(await http_login(http, daemon, "Hunter2-Secret!", "alice")).status for _ in range(5)]
            assert statuses == [401] * 4 + [429]  # refused, then this address is locked out
    assert "Hunter2-Secret!" not in caplog.text
    assert "web login failed for an unknown employee id from 127.0.0.1" in caplog.text
    assert "web login for an unknown employee id from 127.0.0.1 refused" in caplog.text
    assert "web login failed for 'bob'" in caplog.text  # an employee's id is named


async def test_metrics_refused_to_an_address_not_listed(tmp_path, crm):
    config = web_config(tmp_path, metrics_peers='["10.0.0.0/8"]')
    async with running_daemon(None, config, crm, wait_for_ami=False) as daemon:
        async with new_session() as http:
            async with http.get(f"{base_url(daemon)}/metrics") as response:
                assert response.status == 403


def behind_the_proxy(client: str) -> aiohttp.ClientSession:
    """A browser at `client` reaching the daemon through a reverse proxy on loopback."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 headers={"X-Forwarded-For": f"{client}, 127.0.0.1"})


async def test_behind_the_reverse_proxy_wrong_passwords_lock_out_their_client_not_every_agent(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with behind_the_proxy("203.0.113.5") as guesser, behind_the_proxy("198.51.100.7") as agent:
            for employee in ("mallory", "eve", "trent", "peggy", "victor"):  # one client, names it made up
                assert (await http_login(guesser, daemon, employee, "guess-password")).status == 401
            assert (await http_login(guesser, daemon, "bob")).status == 429
            assert (await http_login(agent, daemon, "bob")).status == 303


async def test_behind_the_reverse_proxy_metrics_answer_only_their_peers(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        url = f"{base_url(daemon)}/metrics"
        async with behind_the_proxy("203.0.113.5") as outside, outside.get(url) as response:
            assert response.status == 403
        async with new_session() as local, local.get(url) as response:  # Prometheus on the host itself
            assert response.status == 200
        async with new_session() as local, local.get(url, headers={"X-Forwarded-For": "127.0.0.1"}) as response:
            assert response.status == 200


async def test_a_client_that_is_no_trusted_proxy_cannot_pick_its_address(tmp_path, crm):
    config = web_config(tmp_path)
    config.write_text(config.read_text().replace("metrics_allowed_peers:", "trusted_proxies: [], metrics_allowed_peers:"))
    async with running_daemon(None, config, crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with behind_the_proxy("203.0.113.5") as guesser, behind_the_proxy("198.51.100.7") as other:
            for employee in ("mallory", "eve", "trent", "peggy", "victor"):
                assert (await http_login(guesser, daemon, employee, "guess-password")).status == 401
            assert (await http_login(other, daemon, "bob")).status == 429  # both are 127.0.0.1 here
            async with other.get(f"{base_url(daemon)}/metrics") as response:
                assert response.status == 200


async def test_request_from_another_site_is_refused_even_with_the_token(tmp_path, crm):
    lead = await crm.add_record("lead", "Dupont", UNKNOWN, "alice")
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with new_session() as http:
            await http_login(http, daemon, "alice")
            async with http.get(f"{base_url(daemon)}/api/me") as me:
                token = (await me.json())["csrf"]
            async with http.post(f"{base_url(daemon)}/crm/lead/{lead['id']}", allow_redirects=False,
                                 data={"name": "Hijacked", "csrf": token},
                                 headers={"Origin": "http://evil.example"}) as response:
                assert response.status == 403
            async with http.get(f"{base_url(daemon)}/ws", headers={"Origin": "http://evil.example"}) as response:
                assert response.status == 403
    [after] = await crm.list_records("leads")
    assert after["name"] == "Dupont"


def _session_cookie(response) -> str:
    [cookie] = [c for c in response.headers.getall("Set-Cookie") if c.startswith("agi_daemon_session=")]
    return cookie


async def test_the_session_cookie_is_secure_when_the_browser_came_over_https_through_the_proxy(tmp_path, crm):
    """Behind the README's HTTPS proxy (X-Forwarded-Proto: https) the session cookie is Secure:
    an http:// bookmark never sends it in clear. A request from no trusted proxy cannot claim
    HTTPS; plain HTTP (make run, on loopback) keeps a cookie the browser sends back."""
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), headers={
                "X-Forwarded-For": "203.0.113.5, 127.0.0.1", "X-Forwarded-Proto": "https"}) as https:
            # the proxy speaks HTTPS to the browser: its cookies come back, Secure or not
            async with https.get(f"{base_url(daemon)}/login") as form:
                html, [login_cookie] = await form.text(), form.headers.getall("Set-Cookie")
            assert "Secure" in login_cookie
            token = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            async with https.post(f"{base_url(daemon)}/login", allow_redirects=False,
                                  data={"csrf": token, "employee": "alice", "password": PASSWORDS["alice"]},
                                  headers={"Cookie": login_cookie.split(";", 1)[0]}) as logged_in:
                assert logged_in.status == 303 and "Secure" in _session_cookie(logged_in)
        async with new_session() as plain:
            assert "Secure" not in _session_cookie(await http_login(plain, daemon, "alice"))
    config = web_config(tmp_path)
    config.write_text(config.read_text().replace("metrics_allowed_peers:", "trusted_proxies: [], metrics_allowed_peers:"))
    async with running_daemon(None, config, crm, wait_for_ami=False) as daemon:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         headers={"X-Forwarded-Proto": "https"}) as claiming:
            assert "Secure" not in _session_cookie(await http_login(claiming, daemon, "alice"))


async def test_errors_and_redirects_carry_the_security_headers_and_pages_are_not_cached(tmp_path, crm):
    """A 303 to the login, a 400 quoting what was typed, a page with personal data: each with
    the page's CSP, no framing, no sniffing, and `no-store` (Back after a logout on a shared
    desk shows nothing); the static files may be cached."""
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        url = base_url(daemon)
        async with new_session() as http:
            async with http.get(f"{url}/calls", allow_redirects=False) as redirected:
                answers = [redirected.status, redirected.headers.copy()]
            assert (await http_login(http, daemon, "alice")).status == 303
            async with http.get(f"{url}/crm/leads", params={"phone": "<script>x</script>"}) as refused:
                answers += [refused.status, refused.headers.copy()]
            async with http.get(f"{url}/calls") as page:
                answers += [page.status, page.headers.copy()]
            async with http.get(f"{url}/static/style.css") as static:
                # kept, but asked again: after an upgrade no browser runs the earlier calls.js
                assert static.status == 200 and static.headers.get("Cache-Control") == "no-cache"
    assert answers[0::2] == [303, 400, 200]
    for headers in answers[1::2]:
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert (headers["X-Frame-Options"], headers["X-Content-Type-Options"], headers["Cache-Control"]) == (
            "DENY", "nosniff", "no-store")


@contextlib.asynccontextmanager
async def alice_and_bob_watching(daemon):
    """alice and bob logged in, each with a call window's live socket open (its first cards
    received): (alice's session, alice's window, bob's window)."""
    url = base_url(daemon)
    async with new_session() as alice, new_session() as bob:
        for http, employee in ((alice, "alice"), (bob, "bob")):
            assert (await http_login(http, daemon, employee)).status == 303
        async with alice.ws_connect(f"{url}/ws") as alice_window, bob.ws_connect(f"{url}/ws") as bob_window:
            for window in (alice_window, bob_window):
                assert "html" in await window.receive_json(timeout=5)
            yield alice, alice_window, bob_window, bob


async def test_logging_out_closes_the_open_call_windows_of_that_session_only(tmp_path, crm):
    """An agent logs out in one tab: the call window open in another tab stops at once (no more
    live calls on a shared desk); another agent's window goes on."""
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        url = base_url(daemon)
        async with alice_and_bob_watching(daemon) as (alice, alice_window, bob_window, _):
            async with alice.get(f"{url}/api/me") as me:
                token = (await me.json())["csrf"]
            async with alice.post(f"{url}/logout", data={"csrf": token}, allow_redirects=False) as out:
                assert out.status == 303
            closed = await alice_window.receive(timeout=5)
            assert closed.type == aiohttp.WSMsgType.CLOSE and alice_window.close_code == 4401
            assert not bob_window.closed


async def test_a_password_set_again_ends_that_employees_sessions_and_call_windows(tmp_path, crm):
    """A password leaked: the admin sets it again with `agi-daemon user set-password` (another
    process). Within PASSWORD_CHECK_SECONDS the sessions opened with the old one end, their call
    windows closed; another agent goes on; the new password opens a session that lasts."""
    config = web_config(tmp_path)
    async with running_daemon(None, config, crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        url = base_url(daemon)
        async with alice_and_bob_watching(daemon) as (alice, alice_window, bob_window, bob):
            cli = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agi_daemon", "user", "set-password", "alice", "-c", str(config),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(cli.communicate(b"a brand new password\n"), 60)
            assert cli.returncode == 0, err.decode()
            closed = await alice_window.receive(timeout=PASSWORD_CHECK_SECONDS + 5)
            assert closed.type == aiohttp.WSMsgType.CLOSE and alice_window.close_code == 4401
            assert not bob_window.closed
            async with alice.get(f"{url}/calls", allow_redirects=False) as page:
                assert (page.status, page.headers["Location"]) == (303, "/login")
            async with bob.get(f"{url}/calls", allow_redirects=False) as page:
                assert page.status == 200
        async with new_session() as alice:
            assert (await http_login(alice, daemon, "alice")).status == 401  # the old password
            assert (await http_login(alice, daemon, "alice", "a brand new password")).status == 303
            await asyncio.sleep(PASSWORD_CHECK_SECONDS + 1)  # a check went by: the new session stays
            async with alice.get(f"{url}/calls", allow_redirects=False) as page:
                assert page.status == 200
