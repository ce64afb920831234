"""The FastAGI server under floods and odd replies (issue 12, findings 8, 9, 11): refusals are
summarised, slow senders cannot take the sessions' slots, a refused command is one line."""
from __future__ import annotations

import asyncio
import logging
from ipaddress import ip_network

from agi_daemon.asterisk.agi import AgiSession
from agi_daemon.asterisk.repeated_warnings import RepeatedWarnings

from tests.fakes.fastagi import FakeAsterisk, agi_call, header
from tests.fakes.polling import until

from .test_agi_server import running

SERVER_LOG = "agi_daemon.asterisk.agi.server"


async def answered(session: AgiSession) -> None:
    await session.set_variable("AGI_DAEMON_STATUS", "ok")


async def connect_and_close(port: int) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    await reader.read()
    writer.close()


async def test_flood_from_a_peer_outside_allowed_peers_is_one_line_then_one_summary(caplog):
    caplog.set_level(logging.WARNING, SERVER_LOG)
    async with running({"incoming": answered}, allowed_peers=[ip_network("127.0.0.2/32")]) as server:
        for _ in range(10):
            await asyncio.gather(*(connect_and_close(server.port) for _ in range(50)))
        await until(lambda: server.stats().refused_peers == 500, "500 refusals")
    lines = [r.getMessage() for r in caplog.records if r.name == SERVER_LOG and r.levelno == logging.WARNING]
    assert lines == ["FastAGI: refused connection from 127.0.0.1 (not in allowed_peers)",
                     "FastAGI: refused connection from 127.0.0.1 (not in allowed_peers) (499 more like this in the last 10 s)"]


async def test_flood_past_max_sessions_is_one_line_then_one_summary(caplog):
    caplog.set_level(logging.WARNING, SERVER_LOG)
    release = asyncio.Event()

    async def held(session: AgiSession) -> None:
        await release.wait()

    async with running({"incoming": held}, max_sessions=1) as server:
        first = await FakeAsterisk.connect(server.port)
        await first.send(header())
        await until(lambda: server.stats().active == 1, "the one session")
        for _ in range(4):
            await asyncio.gather(*(connect_and_close(server.port) for _ in range(50)))
        await until(lambda: server.stats().refused_busy == 200, "200 refusals")
        release.set()
        await first.close()
    lines = [r.getMessage() for r in caplog.records if r.name == SERVER_LOG and r.levelno == logging.WARNING]
    assert lines == ["FastAGI: refused connection from 127.0.0.1 (1 sessions open)",
                     "FastAGI: refused connection from 127.0.0.1 (1 sessions open) (199 more like this in the last 10 s)"]


async def test_repeated_warnings_summarise_each_period_and_start_afresh_after_a_quiet_one(caplog):
    log = logging.getLogger("tests.repeated")
    caplog.set_level(logging.WARNING, log.name)
    warnings = RepeatedWarnings(log, period=0.2)
    for peer in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        warnings.warning("refused", "refused %s", peer)
    warnings.warning("other", "another kind")
    await until(lambda: len(caplog.records) == 3, "the summary of the period", timeout=2)
    await asyncio.sleep(0.5)  # a quiet period: the next warning of the kind is logged at once
    warnings.warning("refused", "refused %s", "10.0.0.4")

    assert [r.getMessage() for r in caplog.records] == [
        "refused 10.0.0.1", "another kind", "refused 10.0.0.3 (2 more like this in the last 0.2 s)", "refused 10.0.0.4"]


async def drip(port: int, opened: list[asyncio.StreamWriter]) -> None:
    """A slow sender: the header's first line, then nothing."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"agi_network: yes\n")
    opened.append(writer)


async def test_slow_senders_from_an_allowed_peer_do_not_take_the_slots_of_real_sessions(caplog):
    caplog.set_level(logging.WARNING, SERVER_LOG)
    drippers: list[asyncio.StreamWriter] = []
    async with running({"incoming": answered}, max_sessions=100, header_timeout=30) as server:
        try:
            for _ in range(6):
                await asyncio.gather(*(drip(server.port, drippers) for _ in range(50)))
            await asyncio.sleep(1.1)  # the attack goes on: the drippers have been waiting over 1 s
            answers = await asyncio.gather(*(
                agi_call(server.port, "incoming", extension="0184880000", callerid="0612345678") for _ in range(16)))
            stats = server.stats()
        finally:
            for writer in drippers:
                writer.close()
    assert answers == [{"AGI_DAEMON_STATUS": "ok"}] * 16
    assert stats.sessions - stats.slow_headers_closed <= 100 + 16  # what the drippers could hold: bounded
    assert stats.slow_headers_closed >= 16
    slow = [r.getMessage() for r in caplog.records if "still sending its header" in r.getMessage()]
    assert len(slow) <= 2  # said once, then summarised


async def test_command_refused_with_510_or_520_is_one_error_line_without_traceback(caplog):
    async def incoming(session: AgiSession) -> None:
        await session.set_variable("AGI_DAEMON_STATUS", "ok")

    async with running({"incoming": incoming}) as server:
        for answer in (b"510 Invalid or unknown command\n",
                       b"520-Invalid command syntax.  Proper usage follows:\n Usage: SET VARIABLE\n520 End of proper usage.\n"):
            asterisk = await FakeAsterisk.connect(server.port)
            await asterisk.send(header(uniqueid="1.1"))
            await asterisk.command()
            await asterisk.send(answer)
            assert await asterisk.rest() == b""
            await asterisk.close()
        await until(lambda: server.stats().handler_errors == 2, "both sessions to end")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "FastAGI route incoming: Asterisk refused a command: AGI command failed with 510: Invalid or unknown command "
        "(channel Local/…0000@agi-daemon-incoming-…0001;2, uniqueid 1.1)",
        "FastAGI route incoming: Asterisk refused a command: AGI command failed with 520: Invalid command syntax.  "
        "Proper usage follows: (channel Local/…0000@agi-daemon-incoming-…0001;2, uniqueid 1.1)"]
    assert all(r.exc_info is None for r in errors)


async def test_burst_of_connections_sending_their_header_at_once_is_served_whole():
    async with running({"incoming": answered}, max_sessions=1000, max_pending_headers=8) as server:
        answers = await asyncio.gather(*(
            agi_call(server.port, "incoming", extension="0184880000", callerid="0612345678") for _ in range(300)))
        stats = server.stats()
    assert answers == [{"AGI_DAEMON_STATUS": "ok"}] * 300
    assert (stats.slow_headers_closed, stats.refused_busy) == (0, 0)
