"""The FastAGI server on real loopback sockets, against a hand-written fake Asterisk."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_network
from typing import Any

import pytest

from agi_daemon.asterisk.agi import (
    AgiChannelGone,
    AgiCommandFailed,
    AgiSession,
    FastAgiServer,
    Handler,
)

from tests.fakes.fastagi import WAIT, FakeAsterisk, header
from tests.fakes.polling import until


@asynccontextmanager
async def running(routes: dict[str, Handler], **options: Any) -> AsyncIterator[FastAgiServer]:
    options.setdefault("allowed_peers", [ip_network("127.0.0.0/8")])
    server = FastAgiServer(routes, **options)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await asyncio.wait_for(server.close(timeout=1.0), WAIT)


async def test_full_session_sets_variable_and_closes():
    seen: list[AgiSession] = []

    async def incoming(session: AgiSession) -> None:
        seen.append(session)
        await session.set_variable("AGI_DAEMON_STATUS", "ok")

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header(args=("1700000000.0", "")))
        assert await asterisk.command() == b'SET VARIABLE "AGI_DAEMON_STATUS" "ok"\n'
        await asterisk.send(b"200 result=1\n")
        assert await asterisk.rest() == b""
        await asterisk.close()
        await until(lambda: server.stats().active == 0, "the session to end")
        stats = server.stats()
    [session] = seen
    assert session.request.route == "incoming"
    assert session.request.args == ("1700000000.0", "")
    assert session.request.uniqueid == "1700000000.1"
    assert session.hung_up  # finished sessions accept no command
    assert (stats.sessions, stats.active, stats.protocol_errors, stats.handler_errors) == (1, 0, 0, 0)


async def test_get_variable_returns_value_or_none_when_unset():
    values: list[str | None] = []

    async def incoming(session: AgiSession) -> None:
        values.append(await session.get_variable("CHANNEL(linkedid)"))
        values.append(await session.get_variable("NOT_SET"))
        values.append(await session.get_variable("EMPTY"))
        await session.verbose("done", 2)

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header())
        assert await asterisk.command() == b'GET VARIABLE "CHANNEL(linkedid)"\n'
        await asterisk.send(b"200 result=1 (1700000000.0 (a))\n")
        assert await asterisk.command() == b'GET VARIABLE "NOT_SET"\n'
        await asterisk.send(b"200 result=0\n")
        assert await asterisk.command() == b'GET VARIABLE "EMPTY"\n'
        await asterisk.send(b"200 result=1 ()\n")
        assert await asterisk.command() == b'VERBOSE "done" "2"\n'
        await asterisk.send(b"200 result=1\n")
        assert await asterisk.rest() == b""
        await asterisk.close()
    assert values == ["1700000000.0 (a)", None, ""]


async def test_truncated_header_then_eof_ends_that_session_while_another_is_served():
    served: list[str] = []

    async def incoming(session: AgiSession) -> None:
        await session.set_variable("AGI_DAEMON_STATUS", "ok")
        served.append(session.request.uniqueid)

    async with running({"incoming": incoming}) as server:
        truncated = await FakeAsterisk.connect(server.port)
        await truncated.send(header()[:60])
        healthy = await FakeAsterisk.connect(server.port)
        await healthy.send(header(uniqueid="2.2"))
        assert await healthy.command() == b'SET VARIABLE "AGI_DAEMON_STATUS" "ok"\n'
        truncated.writer.write_eof()
        assert await truncated.rest() == b""
        await healthy.send(b"200 result=1\n")
        assert await healthy.rest() == b""
        await truncated.close()
        await healthy.close()
        await until(lambda: server.stats().active == 0, "both sessions to end")
        stats = server.stats()
    assert served == ["2.2"]
    assert (stats.sessions, stats.protocol_errors) == (2, 1)


@pytest.mark.parametrize(
    ("limits", "data"),
    [
        ({"max_header_bytes": 512}, b"".join(b"agi_x%d: %s\n" % (i, b"y" * 50) for i in range(40))),
        ({"max_header_bytes": 512}, b"agi_request: " + b"x" * 2000),
        ({"max_header_lines": 4}, b"".join(b"agi_x%d: 1\n" % i for i in range(10))),
    ],
    ids=["too many bytes", "endless line", "too many lines"],
)
async def test_oversized_header_is_refused_without_handler(limits, data, caplog):
    called: list[AgiSession] = []

    async def incoming(session: AgiSession) -> None:
        called.append(session)

    async with running({"incoming": incoming}, **limits) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        try:
            await asterisk.send(data)
        except ConnectionError:
            pass  # the server may already have closed: that is the point
        assert await asterisk.rest() == b""
        await asterisk.close()
        await until(lambda: server.stats().active == 0, "the connection to be released")
        assert server.stats().protocol_errors == 1
    assert called == []
    assert "longer than 512 bytes" in caplog.text or "more than 4 lines" in caplog.text


async def test_header_that_never_completes_times_out_after_header_timeout(caplog):
    async def incoming(session: AgiSession) -> None:
        raise AssertionError("no handler may run")

    async with running({"incoming": incoming}, header_timeout=0.2) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        started = time.monotonic()
        await asterisk.send(b"agi_network: yes\nagi_network_script: incoming\n")
        assert await asterisk.rest() == b""
        elapsed = time.monotonic() - started
        await asterisk.close()
        assert server.stats().protocol_errors == 1
        assert server.stats().active == 0
    assert 0.15 <= elapsed < 2.0
    assert "header not complete within 0.2 s" in caplog.text


async def test_silent_peer_times_out_after_header_timeout():
    async with running({}, header_timeout=0.1) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        assert await asterisk.rest() == b""
        await asterisk.close()
        assert server.stats().protocol_errors == 1


async def test_silent_peer_after_the_server_was_idle_still_times_out():
    # the watchdog sleeps while no connection is open and wakes with the next one
    async with running({}, header_timeout=0.1) as server:
        first = await FakeAsterisk.connect(server.port)
        assert await first.rest() == b""
        await first.close()
        await until(lambda: server.stats().active == 0, "the first connection to be closed")
        await asyncio.sleep(0.3)  # several watchdog periods with nothing open
        second = await FakeAsterisk.connect(server.port)
        assert await second.rest() == b""
        await second.close()
        assert server.stats().protocol_errors == 2


async def test_hangup_before_reply_raises_channel_gone_and_next_command_raises_without_writing():
    outcomes: list[object] = []

    async def incoming(session: AgiSession) -> None:
        for name in ("A", "B"):
            try:
                await session.set_variable(name, "1")
            except AgiChannelGone as exc:
                outcomes.append((name, str(exc), session.hung_up))

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header())
        assert await asterisk.command() == b'SET VARIABLE "A" "1"\n'
        await asterisk.send(b"HANGUP\n200 result=1\n")  # Asterisk still answers in dead mode
        assert await asterisk.rest() == b""  # no SET VARIABLE B was written
        await asterisk.close()
    assert outcomes == [
        ("A", "channel hung up (HANGUP)", True),
        ("B", "channel hung up (HANGUP)", True),
    ]


async def test_hangup_between_commands_makes_next_set_variable_raise_channel_gone():
    sessions: list[AgiSession] = []
    proceed = asyncio.Event()
    outcomes: list[str] = []

    async def incoming(session: AgiSession) -> None:
        sessions.append(session)
        await session.set_variable("A", "1")
        await asyncio.wait_for(proceed.wait(), WAIT)  # the handler is busy elsewhere (the CRM)
        try:
            await session.set_variable("B", "2")
        except AgiChannelGone:
            outcomes.append("gone")

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header())
        assert await asterisk.command() == b'SET VARIABLE "A" "1"\n'
        await asterisk.send(b"200 result=1\n")
        await until(lambda: bool(sessions) and not sessions[0]._pending, "the first reply")
        await asterisk.send(b"HANGUP\n")
        await until(lambda: sessions[0].hung_up, "the HANGUP notice")
        proceed.set()
        assert await asterisk.rest() == b""
        await asterisk.close()
    assert outcomes == ["gone"]


async def test_hangup_right_after_header_makes_first_command_raise_without_writing():
    outcomes: list[bool] = []

    async def incoming(session: AgiSession) -> None:
        outcomes.append(session.hung_up)
        with pytest.raises(AgiChannelGone):
            await session.set_variable("A", "1")

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header() + b"HANGUP\n")
        assert await asterisk.rest() == b""
        await asterisk.close()
        assert server.stats().handler_errors == 0
    assert outcomes == [True]


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        (b"511 Command Not Permitted on a dead channel\n", AgiChannelGone, None),
        (b"510 Invalid or unknown command\n", AgiCommandFailed, 510),
        (
            b"520-Invalid command syntax.  Proper usage follows:\n Usage: SET VARIABLE\n520 End of proper usage.\n",
            AgiCommandFailed,
            520,
        ),
    ],
)
async def test_error_replies_raise_matching_error(answer, error, code):
    caught: list[BaseException] = []
    after: list[str | None] = []

    async def incoming(session: AgiSession) -> None:
        try:
            await session.set_variable("A", "1")
        except error as exc:
            caught.append(exc)
        if not session.hung_up:  # a refused command leaves the session usable
            after.append(await session.get_variable("A"))

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header())
        await asterisk.command()
        await asterisk.send(answer)
        if code is not None:
            assert await asterisk.command() == b'GET VARIABLE "A"\n'
            await asterisk.send(b"200 result=1 (x)\n")
        assert await asterisk.rest() == b""
        await asterisk.close()
    [exc] = caught
    if code is None:
        assert after == []
    else:
        assert isinstance(exc, AgiCommandFailed) and exc.reply.code == code and after == ["x"]


async def test_no_reply_within_command_timeout_raises_channel_gone():
    outcomes: list[object] = []

    async def incoming(session: AgiSession) -> None:
        started = time.monotonic()
        try:
            await session.set_variable("A", "1")
        except AgiChannelGone as exc:
            outcomes.extend([str(exc), time.monotonic() - started, session.hung_up])

    async with running({"incoming": incoming}, command_timeout=0.2) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header())
        await asterisk.command()  # ...and never answer
        assert await asterisk.rest() == b""
        await asterisk.close()
    message, elapsed, hung_up = outcomes
    assert message == "no reply within 0.2 s" and 0.15 <= elapsed < 2.0 and hung_up


async def test_connection_lost_during_command_raises_channel_gone():
    outcomes: list[str] = []

    async def incoming(session: AgiSession) -> None:
        try:
            await session.set_variable("A", "1")
        except AgiChannelGone as exc:
            outcomes.append(str(exc))

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header())
        await asterisk.command()
        await asterisk.close()
        await until(lambda: bool(outcomes), "the handler to see the loss")
        await until(lambda: server.stats().active == 0, "the session to end")
    assert outcomes in (["connection closed by Asterisk"], ["connection lost"])


async def test_reply_without_command_is_protocol_error_and_ends_session():
    proceed = asyncio.Event()
    outcomes: list[str] = []

    async def incoming(session: AgiSession) -> None:
        await asyncio.wait_for(proceed.wait(), WAIT)
        try:
            await session.set_variable("A", "1")
        except AgiChannelGone as exc:
            outcomes.append(str(exc))

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header())
        await asterisk.send(b"200 result=1\n")
        assert await asterisk.rest() == b""
        proceed.set()
        await until(lambda: bool(outcomes), "the handler")
        await asterisk.close()
        assert server.stats().protocol_errors == 1
    assert outcomes == ["unexpected reply"]


async def test_handler_that_raises_does_not_affect_next_session(caplog):
    calls: list[str] = []

    async def incoming(session: AgiSession) -> None:
        calls.append(session.request.uniqueid)
        if len(calls) == 1:
            raise RuntimeError("CRM exploded")
        await session.set_variable("AGI_DAEMON_STATUS", "ok")

    async with running({"incoming": incoming}) as server:
        first = await FakeAsterisk.connect(server.port)
        await first.send(header(uniqueid="1.1", callerid="0612345678"))
        assert await first.rest() == b""
        await first.close()
        second = await FakeAsterisk.connect(server.port)
        await second.send(header(uniqueid="2.2"))
        assert await second.command() == b'SET VARIABLE "AGI_DAEMON_STATUS" "ok"\n'
        await second.send(b"200 result=1\n")
        assert await second.rest() == b""
        await second.close()
        await until(lambda: server.stats().active == 0, "both sessions to end")
        stats = server.stats()
    assert calls == ["1.1", "2.2"]
    assert (stats.sessions, stats.handler_errors) == (2, 1)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert "route incoming" in message and "uniqueid 1.1" in message
    assert "CRM exploded" in caplog.text  # the traceback is logged
    assert "0612345678" not in caplog.text and "0184880000" not in caplog.text  # numbers masked
    assert "Local/…0000@agi-daemon-incoming-…0001;2" in message


async def test_peer_outside_allowed_peers_is_closed_without_handler(caplog):
    called: list[AgiSession] = []

    async def incoming(session: AgiSession) -> None:
        called.append(session)

    async with running({"incoming": incoming}, allowed_peers=[ip_network("127.0.0.2/32")]) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        try:
            await asterisk.send(header())
        except ConnectionError:
            pass
        assert await asterisk.rest() == b""
        await asterisk.close()
        stats = server.stats()
    assert called == []
    assert (stats.refused_peers, stats.sessions, stats.active) == (1, 0, 0)
    assert "refused connection from 127.0.0.1 (not in allowed_peers)" in caplog.text


async def test_allowed_peers_given_as_text_admit_that_address():
    async def incoming(session: AgiSession) -> None:
        await session.verbose("hi")

    async with running({"incoming": incoming}, allowed_peers=["10.0.0.0/8", "127.0.0.1"]) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header())
        assert await asterisk.command() == b'VERBOSE "hi" "1"\n'
        await asterisk.send(b"200 result=1\n")
        assert await asterisk.rest() == b""
        await asterisk.close()


async def test_unknown_route_closes_without_handler(caplog):
    called: list[AgiSession] = []

    async def incoming(session: AgiSession) -> None:
        called.append(session)

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header("nope?x=1"))
        assert await asterisk.rest() == b""
        await asterisk.close()
        stats = server.stats()
    assert called == []
    assert (stats.unknown_routes, stats.active) == (1, 0)
    assert "unknown route 'nope'" in caplog.text


async def test_connections_beyond_max_sessions_are_refused():
    release = asyncio.Event()
    served: list[str] = []

    async def incoming(session: AgiSession) -> None:
        await asyncio.wait_for(release.wait(), WAIT)
        served.append(session.request.uniqueid)

    async with running({"incoming": incoming}, max_sessions=1) as server:
        first = await FakeAsterisk.connect(server.port)
        await first.send(header(uniqueid="1.1"))
        await until(lambda: server.stats().active == 1, "the first session")
        second = await FakeAsterisk.connect(server.port)
        assert await second.rest() == b""
        await second.close()
        assert server.stats().refused_busy == 1
        release.set()
        assert await first.rest() == b""
        await first.close()
        third = await FakeAsterisk.connect(server.port)
        await third.send(header(uniqueid="3.3"))
        assert await third.rest() == b""
        await third.close()
        stats = server.stats()
    assert served == ["1.1", "3.3"]
    assert (stats.sessions, stats.refused_busy, stats.active) == (2, 1, 0)


async def test_close_cancels_stuck_sessions_closes_half_headers_and_stops_listening():
    cancelled: list[str] = []
    started = asyncio.Event()

    async def incoming(session: AgiSession) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(session.request.uniqueid)
            raise

    server = FastAgiServer({"incoming": incoming}, allowed_peers=[ip_network("127.0.0.1/32")])
    await server.start("127.0.0.1", 0)
    port = server.port
    stuck = await FakeAsterisk.connect(port)
    await stuck.send(header(uniqueid="9.9"))
    await asyncio.wait_for(started.wait(), WAIT)
    half = await FakeAsterisk.connect(port)
    await half.send(b"agi_network: yes\n")
    await until(lambda: server.stats().active == 2, "both connections")

    before = time.monotonic()
    await asyncio.wait_for(server.close(timeout=0.2), WAIT)
    assert time.monotonic() - before < 2.0

    assert cancelled == ["9.9"]
    assert server.stats().active == 0
    assert await stuck.rest() == b"" and await half.rest() == b""
    await stuck.close()
    await half.close()
    with pytest.raises(OSError):
        await FakeAsterisk.connect(port)
    await server.close()  # a second close is harmless


async def test_close_lets_running_sessions_finish_within_timeout():
    finished: list[str] = []

    async def incoming(session: AgiSession) -> None:
        await session.set_variable("A", "1")
        finished.append(session.request.uniqueid)

    server = FastAgiServer({"incoming": incoming}, allowed_peers=["127.0.0.1"])
    await server.start("127.0.0.1", 0)
    asterisk = await FakeAsterisk.connect(server.port)
    await asterisk.send(header(uniqueid="5.5"))
    await asterisk.command()
    closing = asyncio.ensure_future(server.close(timeout=WAIT))
    await asyncio.sleep(0.05)
    assert not closing.done()
    await asterisk.send(b"200 result=1\n")
    await asyncio.wait_for(closing, WAIT)
    assert finished == ["5.5"]
    assert await asterisk.rest() == b""
    await asterisk.close()


async def test_port_before_start_raises_and_stats_are_a_frozen_snapshot():
    server = FastAgiServer({}, allowed_peers=[])
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    stats = server.stats()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.sessions = 3  # type: ignore[misc]
    await server.close()  # closing a server never started is harmless


async def test_several_variables_go_in_one_mset_round_trip():
    async def incoming(session: AgiSession) -> None:
        await session.set_variables([("AGI_DAEMON_QUEUE", "PJSIP/101&PJSIP/102"), ("AGI_DAEMON_STATUS", "ok")])

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header())
        assert await asterisk.command() == b'EXEC "MSet" "AGI_DAEMON_QUEUE=PJSIP/101&PJSIP/102,AGI_DAEMON_STATUS=ok"\n'
        await asterisk.send(b"200 result=0\n")
        assert await asterisk.rest() == b""
        await asterisk.close()


@pytest.mark.parametrize(
    "value, mset_reply",
    [("a,b", None), ("x${EVIL}", None), ("plain", b"200 result=-2\n")],
    ids=["comma-in-value", "expression-in-value", "mset-refused"],
)
async def test_variables_mset_cannot_carry_go_one_by_one_status_last(value, mset_reply):
    async def incoming(session: AgiSession) -> None:
        await session.set_variables([("AGI_DAEMON_TRUNK", value), ("AGI_DAEMON_STATUS", "ok")])

    async with running({"incoming": incoming}) as server:
        asterisk = await FakeAsterisk.connect(server.port)
        await asterisk.send(header())
        if mset_reply is not None:
            assert (await asterisk.command()).startswith(b'EXEC "MSet"')
            await asterisk.send(mset_reply)
        assert await asterisk.command() == f'SET VARIABLE "AGI_DAEMON_TRUNK" "{value}"\n'.encode()
        await asterisk.send(b"200 result=1\n")
        assert await asterisk.command() == b'SET VARIABLE "AGI_DAEMON_STATUS" "ok"\n'
        await asterisk.send(b"200 result=1\n")
        assert await asterisk.rest() == b""
        await asterisk.close()
