"""The AMI client against a fake AMI peer on 127.0.0.1. Every test is bounded by a timeout."""
from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from agi_daemon.asterisk.ami import (
    AmiActionTimeout,
    AmiClient,
    AmiConnectionLost,
    AmiEvent,
    AmiItem,
    AmiNotConnected,
    AmiResync,
    ChannelSnapshot,
)

from tests.fakes.polling import until

from .fake_ami import FakeAmi, channel

SECRET = "s3cret-Zq81-never-logged"
LOGGER = "test.ami"


def make_client(ami: FakeAmi, **options: Any) -> AmiClient:
    settings: dict[str, Any] = dict(
        ping_interval=0.05, ping_timeout=0.5, backoff_min=0.02, backoff_max=0.1,
        connect_timeout=1.0, action_timeout=1.0, rng=random.Random(1),
        logger=logging.getLogger(LOGGER))
    settings.update(options)
    secret = settings.pop("secret", SECRET)
    return AmiClient("127.0.0.1", ami.port, "agi-daemon", secret, **settings)


@asynccontextmanager
async def running(client: AmiClient) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        await asyncio.wait_for(client.close(), 2)
        await asyncio.wait_for(task, 2)


async def next_item(client: AmiClient, timeout: float = 2.0) -> AmiItem:
    return await asyncio.wait_for(client.queue.get(), timeout)


def user_event(seq: int) -> dict[str, str]:
    return {"Event": "UserEvent", "UserEvent": "Flood", "Seq": str(seq)}


def new_channel(n: int) -> dict[str, str]:
    return {"Event": "Newchannel", "Channel": f"PJSIP/10{n}-1", "Uniqueid": f"1.{n}",
            "Linkedid": "1.1", "CallerIDNum": "+33612000001"}


async def test_login_then_events_arrive_as_frozen_ami_events(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with asyncio.timeout(5), FakeAmi(secret=SECRET, channels=[channel(1)]) as ami:
        client = make_client(ami, events={"Newchannel"}, clock=lambda: 1234.5)
        async with running(client):
            resync = await next_item(client)
            assert isinstance(resync, AmiResync)
            assert client.connected
            ami.push(new_channel(2))
            event = await next_item(client)
        assert isinstance(event, AmiEvent)
        assert event.name == "Newchannel" and event.received_at == 1234.5
        assert (event.channel, event.uniqueid, event.linkedid) == ("PJSIP/102-1", "1.2", "1.1")
        assert event.get("CallerIDNum") == "+33612000001"
        with pytest.raises(TypeError):
            event.fields["Channel"] = "x"  # type: ignore[index]
        assert ami.login_events == ["call,agent,user"]
        assert not client.connected
        assert SECRET not in caplog.text


async def test_events_outside_the_filter_are_discarded() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami, events={"hangup"})
        async with running(client):
            assert isinstance(await next_item(client), AmiResync)
            for name in ("VarSet", "Newexten", "DeviceStateChange"):
                ami.push({"Event": name, "Channel": "PJSIP/101-1"})
            ami.push({"Event": "Hangup", "Channel": "PJSIP/101-1", "Cause": "16"})
            event = await next_item(client)
            assert isinstance(event, AmiEvent) and event.name == "Hangup"
            await asyncio.sleep(0.05)
            assert client.queue.empty()


async def test_no_filter_keeps_every_event() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami, events=None, event_mask="on")
        async with running(client):
            assert isinstance(await next_item(client), AmiResync)
            ami.push({"Event": "VarSet", "Variable": "X"})
            event = await next_item(client)
            assert isinstance(event, AmiEvent) and event.name == "VarSet"
        assert ami.login_events == ["on"]


async def test_answered_pings_keep_the_link_up() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami)
        async with running(client):
            await until(lambda: ami.pings >= 5)
            assert client.connected and client.reconnects == 0 and ami.connections == 1


async def test_one_unanswered_ping_keeps_the_link_up() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami)
        async with running(client):
            await ami.wait_logins(1)
            ami.pings_to_ignore = 1
            await until(lambda: ami.pings >= 6)
            assert client.connected and client.reconnects == 0 and ami.connections == 1


async def test_two_unanswered_pings_declare_the_link_dead_and_reconnect() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami, ping_timeout=0.05)
        async with running(client):
            assert isinstance(await next_item(client), AmiResync)
            ami.answer_pings = False
            await until(lambda: ami.connections >= 2)
            ami.answer_pings = True
            await ami.wait_logins(2)
            assert isinstance(await next_item(client), AmiResync)
            await until(lambda: client.connected)
            assert client.reconnects == 1
            assert client.last_error is not None and "2 pings" in client.last_error


async def test_peer_drop_reconnects_and_resync_is_the_first_item_after() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET, channels=[channel(1)]) as ami:
        client = make_client(ami, events={"Newchannel"}, ping_interval=10)
        async with running(client):
            first = await next_item(client)
            assert isinstance(first, AmiResync)
            assert [c.uniqueid for c in first.channels] == ["1700000000.1"]
            ami.push(new_channel(1))
            assert isinstance(await next_item(client), AmiEvent)

            ami.channels = [channel(2, linkedid="1700000000.1"), channel(3, state="Ringing")]
            ami.after_login = [new_channel(4)]  # sent before the channel list is answered
            ami.drop()

            resync = await next_item(client)
            assert isinstance(resync, AmiResync)
            assert resync.channels == tuple(ChannelSnapshot.from_fields(c) for c in ami.channels)
            assert resync.channels[0].linkedid == "1700000000.1"
            assert resync.channels[1].state == "Ringing" and resync.channels[1].duration == 65
            after = await next_item(client)
            assert isinstance(after, AmiEvent) and after.uniqueid == "1.4"
            assert client.reconnects == 1 and client.connected


async def test_wrong_secret_gives_clear_error_retries_with_backoff_and_never_logs_secret(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng-Secret-991"
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami, secret=wrong, backoff_min=0.05, backoff_max=0.2)
        async with running(client):
            await until(lambda: len(ami.logins) >= 4)
            assert not client.connected and client.queue.empty()
            assert client.last_error is not None
            assert "AmiAuthError" in client.last_error
            assert "Authentication failed" in client.last_error
        times = [t for t, accepted in ami.logins if not accepted]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= 0.045 for gap in gaps), gaps
        assert wrong not in caplog.text and SECRET not in caplog.text
        assert "login refused" in caplog.text
        assert wrong not in repr(client)


async def test_flood_of_2000_events_per_second_with_a_consumer_drops_nothing_in_order() -> None:
    count = 4000
    async with asyncio.timeout(15), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami, events={"UserEvent"}, queue_size=1000, ping_interval=0.5,
                             ping_timeout=1.0)
        received: list[int] = []

        async def consume() -> None:
            async for item in client.events():
                if isinstance(item, AmiEvent):
                    received.append(int(item.fields["Seq"]))
                    if len(received) == count:
                        return

        async with running(client):
            await ami.wait_logins(1)
            consumer = asyncio.create_task(consume())
            started = time.monotonic()
            await ami.flood(count, 2000, user_event)
            assert time.monotonic() - started >= 1.9  # the rate was really 2,000/s
            await asyncio.wait_for(consumer, 5)
            assert client.dropped == 0
            assert received == list(range(count))
            assert client.reconnects == 0


async def test_full_queue_without_consumer_counts_drops_without_growth(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    count, size = 3000, 50
    async with asyncio.timeout(10), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami, events={"UserEvent"}, queue_size=size)
        async with running(client):
            assert isinstance(await next_item(client), AmiResync)
            await ami.flood(count, 1_000_000, user_event)
            await until(lambda: client.dropped + client.queue.qsize() == count)
            assert client.queue.qsize() == size
            assert client.dropped == count - size
            kept = [client.queue.get_nowait() for _ in range(size)]
            seqs = [int(e.fields["Seq"]) for e in kept if isinstance(e, AmiEvent)]
            assert seqs == list(range(size))
            assert client.connected and client.reconnects == 0
        drop_logs = [r for r in caplog.records if "queue full" in r.getMessage()]
        assert 1 <= len(drop_logs) <= 2


async def test_close_during_backoff_returns_promptly() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami, secret="wrong", backoff_min=30, backoff_max=30)
        task = asyncio.create_task(client.run())
        await until(lambda: client.last_error is not None)
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await asyncio.wait_for(client.close(), 1)
        await asyncio.wait_for(task, 1)
        assert time.monotonic() - started < 0.5
        assert len(ami.logins) == 1


async def test_close_while_connected_logs_off_and_ends_the_event_iterator() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami, events={"Hangup"})
        items: list[AmiItem] = []

        async def consume() -> None:
            async for item in client.events():
                items.append(item)

        task = asyncio.create_task(client.run())
        consumer = asyncio.create_task(consume())
        await until(lambda: len(items) == 1)
        await asyncio.wait_for(client.close(), 1)
        await asyncio.wait_for(task, 1)
        await asyncio.wait_for(consumer, 1)
        assert isinstance(items[0], AmiResync)
        await until(lambda: any(a.get("action") == "Logoff" for a in ami.actions))


async def test_queued_answer_without_async_completes_the_action_and_keeps_the_link() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami)
        async with running(client):
            await until(lambda: client.connected)
            response = await client.action("Atxfer", Channel="PJSIP/101-1", Exten="102",
                                           Context="employees")
            assert response.success and response.message == "Atxfer successfully queued"
            assert ami.actions[-1]["async"] == "true"
            response = await client.action("Originate", Channel="Local/101@employees",
                                           Exten="s", Context="c", Priority=1, Async="false",
                                           Variable=["A=1", "B=2"])
            assert response.success and ami.actions[-1]["async"] == "false"
            await until(lambda: ami.pings >= 3)
            assert client.connected and ami.connections == 1


async def test_list_action_returns_its_items_as_events() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET, channels=[channel(1), channel(2)]) as ami:
        client = make_client(ami)
        async with running(client):
            await until(lambda: client.connected)
            response = await client.action("CoreShowChannels")
            assert response.success
            assert [e.uniqueid for e in response.events] == ["1700000000.1", "1700000000.2"]
            refused = await client.action("NoSuchAction")
            assert not refused.success and refused.message == "Invalid/unknown command"


async def test_action_while_disconnected_raises_not_connected() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami)
        with pytest.raises(AmiNotConnected):
            await client.action("Ping")


async def test_unanswered_action_times_out_and_dropped_link_fails_pending_action() -> None:
    async with asyncio.timeout(5), FakeAmi(secret=SECRET) as ami:
        client = make_client(ami, ping_interval=10, action_timeout=0.1)
        async with running(client):
            await until(lambda: client.connected)
            ami.answer_pings = False
            with pytest.raises(AmiActionTimeout):
                await client.action("Ping")
            pending = asyncio.create_task(client.action("Ping"))
            await until(lambda: ami.pings >= 2)
            ami.drop()
            with pytest.raises(AmiConnectionLost):
                await pending


def test_secret_with_a_line_break_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError) as raised:
        AmiClient("127.0.0.1", 5038, "agi-daemon", "abc\r\nAction: Originate")
    assert "abc" not in str(raised.value)


async def test_dropped_events_trigger_a_fresh_resync_once_the_link_answers_again() -> None:
    """A dropped Hangup would leave a call open forever: after drops, the live channels are
    read again (CoreShowChannels) so the tracker can close what it missed."""
    size = 20
    async with asyncio.timeout(10), FakeAmi(secret=SECRET, channels=[channel(1)]) as ami:
        client = make_client(ami, events={"UserEvent"}, queue_size=size, ping_interval=0.2, ping_timeout=1.0)
        async with running(client):
            assert isinstance(await next_item(client), AmiResync)
            await ami.flood(size * 3, 1_000_000, user_event)
            await until(lambda: client.dropped > 0)
            resyncs = 0
            while resyncs == 0:  # drain: the resync comes after the kept events
                item = await next_item(client)
                resyncs += isinstance(item, AmiResync)
            assert client.reconnects == 0
            assert sum(1 for a in ami.actions if a.get("action", "").lower() == "coreshowchannels") == 2
