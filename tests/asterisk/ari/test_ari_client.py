"""The daemon's ARI client against the real Asterisk 22 sandbox: login, snapshot, events,
reconnection through a proxy that drops the link, back-pressure, and secrets kept out of logs."""
from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from agi_daemon.asterisk.ari import EVENT_TYPES, AriClient, AriEvent, AriRefused, AriResync
from agi_daemon.asterisk.ari.client import without_userinfo
from tests.asterisk.sandbox import closed_port
from tests.fakes.polling import eventually
from tests.fakes.rules import make_rules
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.asterisk

LINE = "+33184880000"
CLIENT = "+33611223344"


@pytest.fixture
def calls_ring(asterisk):
    """The daemon is down here: calls to the line ring its queue group through the fallback."""
    asterisk.write_fallback(make_rules())
    return asterisk


@contextlib.asynccontextmanager
async def running(client: AriClient):
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        await client.close()
        await task


def daemon_client(sandbox, url=None, password=None, **options) -> AriClient:
    base, user, secret = sandbox.daemon_ari
    options = {"backoff_min": 0.05, "backoff_max": 0.2, **options}
    return AriClient(url or base, user, password or secret, "agi-daemon-client-test", event_types=EVENT_TYPES,
                     **options)


async def test_connects_with_the_project_user_and_publishes_a_snapshot_first(asterisk):
    async with running(daemon_client(asterisk)) as client:
        first = await asyncio.wait_for(client.queue.get(), 10)
        assert client.connected
    assert isinstance(first, AriResync)


async def test_the_application_hears_every_channel_bridge_and_endpoint_and_no_device_state(asterisk):
    """Not `subscribeAll`: an application subscribed to device states can deadlock Asterisk's
    ARI when its WebSocket closes (asterisk/asterisk#2170; see agi_daemon.asterisk.ari.client)."""
    async with running(daemon_client(asterisk)) as client:
        await asyncio.wait_for(client.queue.get(), 10)
        application = await client.request("GET", f"/applications/{client.app}")

    assert application["channel_ids"] == ["__AST_CHANNEL_ALL_TOPIC"]
    assert application["bridge_ids"] == ["__AST_BRIDGE_ALL_TOPIC"]
    assert application["endpoint_ids"] == ["__AST_ENDPOINT_ALL_TOPIC"]
    assert application["device_names"] == []


async def test_events_websocket_held_while_rest_answers_is_named_a_deadlocked_ari(asterisk, caplog):
    """What an admin reads when another ARI application left Asterisk's ARI deadlocked
    (asterisk/asterisk#2170): REST answers, the events WebSocket never opens."""
    caplog.set_level(logging.WARNING)
    async with TcpProxy(asterisk.http_port, stall_websockets=True) as proxy:
        async with running(daemon_client(asterisk, url=f"http://127.0.0.1:{proxy.port}", connect_timeout=0.5)) as client:
            await eventually(lambda: client.last_error and "deadlocked" in client.last_error, timeout=10)
            assert not client.connected and proxy.stalled >= 1
    assert any("asterisk/asterisk#2170" in record.getMessage() for record in caplog.records)


async def test_wrong_password_is_retried_and_never_reaches_the_log(asterisk, caplog):
    caplog.set_level(logging.DEBUG)
    async with running(daemon_client(asterisk, password="not-the-password-4242")) as client:
        await eventually(lambda: client.last_error and "401" in client.last_error, timeout=5)
        await asyncio.sleep(0.3)  # a few more attempts
        assert not client.connected
    assert client.last_error is not None and "401" in client.last_error
    assert client.failed_attempts >= 2
    assert "not-the-password-4242" not in caplog.text
    assert asterisk.daemon_ari_password not in caplog.text


async def test_rest_call_with_the_project_user_lists_channels_and_refuses_unknown_ones(asterisk):
    async with running(daemon_client(asterisk)) as client:
        await eventually(lambda: client.connected, timeout=5)
        assert isinstance(await client.request("GET", "/channels"), list)
        with pytest.raises(AriRefused) as refused:
            await client.request("POST", "/channels/no-such-channel/continue")
    assert refused.value.status == 404


async def test_link_cut_reconnects_and_publishes_a_new_snapshot(calls_ring, asterisk, asterisk_ami):
    async with TcpProxy(asterisk.http_port) as proxy:
        async with running(daemon_client(asterisk, url=f"http://127.0.0.1:{proxy.port}")) as client:
            await eventually(lambda: client.connected, timeout=5)
            call = await asterisk_ami.originate_incoming(LINE, CLIENT)
            await asyncio.wait_for(call.response, 5)
            proxy.cut()
            await eventually(lambda: client.reconnects >= 1 and client.connected, timeout=5)
            items = []
            while not client.queue.empty():
                items.append(client.queue.get_nowait())
    snapshots = [item for item in items if isinstance(item, AriResync)]
    assert len(snapshots) == 2
    linked = {c.get("channelvars", {}).get("CHANNEL(linkedid)") for c in snapshots[1].channels}
    assert call.linkedid in linked  # the call in progress, seen again after the cut


async def test_full_queue_counts_drops_then_resyncs_once_the_reader_caught_up(calls_ring, asterisk, asterisk_ami):
    async with running(daemon_client(asterisk, queue_size=4)) as client:
        await eventually(lambda: client.connected, timeout=5)
        call = await asterisk_ami.originate_incoming(LINE, CLIENT)
        await asyncio.wait_for(call.response, 5)
        await eventually(lambda: client.dropped > 0, timeout=5)
        while not client.queue.empty():
            client.queue.get_nowait()  # the reader catches up
        await asterisk_ami.hangup_call(call.linkedid)  # more events: the next one triggers the resync
        resync = await eventually(lambda: _queued(client, AriResync), timeout=5)
    assert resync


def _queued(client: AriClient, kind):
    while not client.queue.empty():
        if isinstance(client.queue.get_nowait(), kind):
            return True
    return False


async def test_only_the_event_types_tracking_reads_are_queued(calls_ring, asterisk, asterisk_ami):
    async with running(daemon_client(asterisk)) as client:
        await eventually(lambda: client.connected, timeout=5)
        call = await asterisk_ami.originate_incoming(LINE, CLIENT)
        await asyncio.wait_for(call.response, 5)
        await asterisk_ami.hangup_call(call.linkedid)
        await asyncio.sleep(0.5)
        items = []
        while not client.queue.empty():
            items.append(client.queue.get_nowait())
    types = {item.type for item in items if isinstance(item, AriEvent)}
    assert types and types <= EVENT_TYPES
    assert {"ChannelCreated", "Dial", "ChannelDestroyed"} <= types


async def test_asterisk_booting_answers_503_and_the_client_retries_until_connected(asterisk_factory, caplog):
    sandbox = asterisk_factory("ari-boot")
    sandbox.stop(keep_files=True)
    client = daemon_client(sandbox, backoff_min=0.01, backoff_max=0.02)  # tight: the 503 window is short
    async with running(client):
        await asyncio.sleep(0.2)  # refused: nothing listens yet
        await asyncio.to_thread(sandbox.start, keep_ports=True)
        connected = await eventually(lambda: client.connected, timeout=10)
    assert connected
    assert "Asterisk not ready (503)" in caplog.text and "Connect call failed" in caplog.text


@pytest.mark.parametrize("url, shown", [
    ("http://127.0.0.1:8088", "http://127.0.0.1:8088"),
    ("http://agi-daemon:s3cret@127.0.0.1:8088/", "http://127.0.0.1:8088/"),
    ("https://user@pbx.example.com/asterisk", "https://pbx.example.com/asterisk"),
])
def test_credentials_written_into_the_url_never_reach_the_logged_url(url, shown):
    assert without_userinfo(url) == shown


async def test_credentials_in_the_configured_url_are_not_used_nor_logged(asterisk, caplog):
    caplog.set_level(logging.DEBUG)
    base, user, secret = asterisk.daemon_ari
    url = base.replace("http://", "http://someone:url-secret-77@")
    async with running(daemon_client(asterisk, url=url)) as client:
        connected = await eventually(lambda: client.connected, timeout=5)  # the header's credentials
    assert connected
    assert "url-secret-77" not in caplog.text and secret not in caplog.text


async def test_asterisk_away_is_logged_once_per_outage_saying_what_falls_back(caplog):
    caplog.set_level(logging.DEBUG, logger="test.ari.logs")
    client = AriClient(f"http://127.0.0.1:{closed_port()}", "agi-daemon", "s3cret", "agi-daemon-client-test",
                       event_types=EVENT_TYPES, backoff_min=0.01, backoff_max=0.02,
                       logger=logging.getLogger("test.ari.logs"))
    async with running(client):
        await eventually(lambda: client.failed_attempts >= 20, timeout=5)
    logged = [r.getMessage() for r in caplog.records if r.name == "test.ari.logs" and r.levelno >= logging.WARNING]
    assert len(logged) == 1, logged
    assert "call tracking and hangup reports paused" in logged[0] and "fallback routes" in logged[0]
    assert client.last_error is not None and not client.connected


def test_the_sandbox_tells_an_asterisk_answering_ari_from_one_that_does_not(asterisk):
    """The probe the shared sandbox's fixture uses before each test (tests/conftest.py `employees`)."""
    import copy

    gone = copy.copy(asterisk)
    gone.http_port = closed_port()
    assert asterisk.ari_answers() and not gone.ari_answers(timeout=1.0)
