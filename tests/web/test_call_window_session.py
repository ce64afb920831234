"""The call window in headless Chromium when its session ends: a logout in another tab takes
the open window to the login page at once, its cards gone (a shared desk shows nothing); a
session that ended while the live socket was down (the daemon restarted: sessions live in its
memory) takes it there at the reconnection, not to "reconnecting" forever over old cards."""
from __future__ import annotations

import asyncio

import pytest

from agi_daemon.web.server import SESSIONS, SOCKETS
from tests.daemon_harness import running_daemon
from tests.web.harness import base_url, chromium, logged_in, set_passwords, web_config

pytestmark = pytest.mark.browser


async def test_logging_out_in_another_tab_takes_the_call_window_to_the_login(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with chromium() as browser:
            window = await logged_in(browser, daemon, "alice")
            other_tab = await window.context.new_page()
            await other_tab.goto(f"{base_url(daemon)}/calls")
            await other_tab.click("form.logout button")
            await other_tab.wait_for_url("**/login")
            await window.wait_for_url("**/login", timeout=5000)  # pushed, not at the next reconnection
            assert await window.query_selector("#cards") is None


async def test_a_session_gone_while_the_live_socket_was_down_takes_the_window_to_the_login(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with chromium() as browser:
            window = await logged_in(browser, daemon, "alice")
            app = daemon.parts.web.app
            app[SESSIONS]._sessions.clear()  # as a restart leaves them, the socket not told
            for socket in list(app[SOCKETS]):
                await socket.close(code=1011, message=b"gone")  # not 4401: the window reconnects
            await window.wait_for_url("**/login", timeout=10000)
            assert await window.query_selector("#cards") is None



async def test_the_window_says_when_calls_are_not_followed_and_when_they_are_again(tmp_path, crm):
    """With the daemon's AMI link down no new call reaches the window: it said "Live" all the
    same. It now says calls are not followed, and "Live" again within seconds of the link."""
    from agi_daemon.web.calls import LINK_CHECK_SECONDS

    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:  # AMI: a closed port
        await set_passwords(crm)
        async with chromium() as browser:
            window = await logged_in(browser, daemon, "alice")
            live = await window.wait_for_selector("#live.untracked")
            assert await live.inner_text() == "Calls not followed: the PBX link is down"
            daemon.parts.web.context.tracking = lambda: True  # as when the link comes back
            live = await window.wait_for_selector("#live.on", timeout=(LINK_CHECK_SECONDS + 3) * 1000)
            assert await live.inner_text() == "Live"


async def test_a_live_socket_gone_silent_is_given_up_and_opened_again(tmp_path, crm, monkeypatch):
    """A network blip leaves the socket open on both ends with nothing coming through (not
    even a close): the window showed "Live" over frozen cards. Past LIVE_SILENCE_SECONDS with
    no message (the daemon writes at least every HEARTBEAT_SECONDS) it opens a new socket."""
    from agi_daemon.web import calls
    from tests.tcp_proxy import TcpProxy

    monkeypatch.setattr(calls, "LIVE_SILENCE_SECONDS", 2.0)
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with TcpProxy(daemon.web_port) as proxy, chromium() as browser:
            window = await logged_in(browser, daemon, "alice", url=f"http://127.0.0.1:{proxy.port}")
            sockets = daemon.parts.web.app[SOCKETS]
            assert len(sockets) == 1
            proxy.freeze()  # the open socket goes silent, both ways
            async with asyncio.timeout(10):
                while len(sockets) < 2:  # the frozen one (the daemon cannot tell) and a new one
                    await asyncio.sleep(0.1)
            await window.wait_for_selector("#live.untracked", timeout=5000)  # live again (AMI is down)
