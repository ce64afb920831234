"""What the AMI client tells the admin in the log while Asterisk is away: one line per outage
that says what is degraded, not three per retry; a silent peer named as such."""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import pytest

from agi_daemon.asterisk.ami import AmiClient
from tests.asterisk.sandbox import closed_port

from .fake_ami import FakeAmi

LOGGER = "test.ami.logs"


def client_for(port: int, **options: object) -> AmiClient:
    settings: dict = dict(ping_interval=0.05, ping_timeout=0.5, backoff_min=0.01, backoff_max=0.02,
                          connect_timeout=0.3, action_timeout=0.3, rng=random.Random(1),
                          logger=logging.getLogger(LOGGER))
    settings.update(options)
    return AmiClient("127.0.0.1", port, "agi-daemon", "s3cret", **settings)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= level]


async def test_many_failed_retries_log_one_line_saying_what_is_degraded(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    client = client_for(closed_port())
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.failed_attempts >= 20)
    finally:
        await asyncio.wait_for(client.close(), 2)
        await asyncio.wait_for(task, 2)
    logged = lines(caplog)
    assert len(logged) == 1, logged
    assert "call tracking paused" in logged[0] and "calls are still routed" in logged[0]
    assert "retrying" in logged[0]


async def test_an_outage_that_lasts_is_logged_again_at_most_once_per_interval(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    client = client_for(closed_port(), log_every=0.2)
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: any("still" in line for line in lines(caplog)))
        await until(lambda: client.failed_attempts >= 40)
    finally:
        await asyncio.wait_for(client.close(), 2)
        await asyncio.wait_for(task, 2)
    logged = lines(caplog)
    assert 2 <= len(logged) < client.failed_attempts / 4, logged
    assert all("call tracking paused" in line for line in logged)


async def test_recovery_is_logged_once_with_tracking_resumed(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with FakeAmi(secret="s3cret") as ami:
        client = client_for(ami.port)
        task = asyncio.create_task(client.run())
        try:
            await until(lambda: client.connected)
            ami.drop()
            await until(lambda: client.reconnects >= 1)
        finally:
            await asyncio.wait_for(client.close(), 2)
            await asyncio.wait_for(task, 2)
    assert any("call tracking resumed" in line for line in lines(caplog))


async def test_a_pbx_that_accepts_the_login_but_never_lists_its_channels_is_one_outage_backing_off(caplog):
    """Logging in is not enough to call the link up: until the live channels are read, the
    retries back off as for a PBX that refuses connections, and the outage stays one line."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with FakeAmi(secret="s3cret") as ami:
        ami.answer_core_show_channels = False
        client = client_for(ami.port, action_timeout=0.05, backoff_min=0.02, backoff_max=0.32, ping_interval=5)
        task = asyncio.create_task(client.run())
        try:
            await until(lambda: len(ami.logins) >= 5)
            failed = client.failed_attempts
        finally:
            await asyncio.wait_for(client.close(), 2)
            await asyncio.wait_for(task, 2)
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "call tracking paused" in warnings[0], warnings
    assert not any("resumed" in line for line in lines(caplog))
    assert failed >= 4  # the failures in a row are counted, and the backoff grows with them


async def test_a_peer_that_accepts_and_stays_silent_is_named_as_such(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    silent: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    client = client_for(server.sockets[0].getsockname()[1])
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.last_error is not None)
    finally:
        await asyncio.wait_for(client.close(), 2)
        await asyncio.wait_for(task, 2)
        for writer in silent:
            writer.close()
        server.close()
    assert "no AMI banner within 0.3 s" in client.last_error
    assert "timed out" not in " ".join(lines(caplog))
