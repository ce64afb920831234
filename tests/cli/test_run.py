"""`agi-daemon run` as a PBX admin runs it: a real process, SIGHUP reloads, SIGTERM stops."""
import asyncio
import os
import re
import signal
import sys

import pytest

from tests.daemon_harness import UNKNOWN, write_config
from tests.fakes.fastagi import agi_call
from tests.asterisk.sandbox import closed_port


async def read_until(stream, pattern: str, seen: list[str], timeout: float = 10.0) -> re.Match:
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the daemon exited; it said:\n{''.join(seen)}")
            seen.append(line)
            if match := re.search(pattern, line):
                return match


@pytest.fixture
async def daemon(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "very-secret-ami"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agi_daemon", "run", "-c", str(config),
        stderr=asyncio.subprocess.PIPE, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen: list[str] = []
    port = int((await read_until(process.stderr, r"FastAGI listening on 127\.0\.0\.1:(\d+)", seen))[1])
    yield process, config, port, seen
    if process.returncode is None:
        process.kill()
        await process.wait()


async def queue_of(port: int) -> str:
    answer = await agi_call(port, "incoming", extension="0184880000", callerid=UNKNOWN, args=("run-test",))
    assert answer["AGI_DAEMON_STATUS"] == "ok"
    return answer["AGI_DAEMON_QUEUE"]


async def test_sighup_applies_a_valid_file_and_keeps_the_running_config_on_a_broken_one(daemon):
    process, config, port, seen = daemon
    assert await queue_of(port) == "Local/101@employees&Local/102@employees"

    config.write_text(config.read_text().replace("members: [alice, bob]", "members: [bob, alice]"))
    process.send_signal(signal.SIGHUP)
    await read_until(process.stderr, r"config reloaded", seen)
    assert await queue_of(port) == "Local/102@employees&Local/101@employees"

    lines = config.read_text().splitlines()
    broken_line = next(i for i, line in enumerate(lines, 1) if "members: [bob, alice]" in line)
    config.write_text(config.read_text().replace("members: [bob, alice]", "members: [bob, zoe]"))
    process.send_signal(signal.SIGHUP)
    await read_until(process.stderr, r"reload refused", seen)
    problem = await read_until(process.stderr, r"queue_groups", seen)
    assert problem.string.strip() == f"{config}:{broken_line}: queue_groups.sales.members.1: unknown employee: zoe"
    assert await queue_of(port) == "Local/102@employees&Local/101@employees"


async def test_sigterm_stops_cleanly_and_logs_no_secret_or_full_number(daemon):
    process, _, port, seen = daemon
    await queue_of(port)
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        rest = (await process.stderr.read()).decode()
        assert await process.wait() == 0
    output = "".join(seen) + rest
    assert "very-secret-ami" not in output
    assert UNKNOWN not in output and UNKNOWN.lstrip("+") not in output


async def test_port_already_taken_is_one_clear_line(tmp_path):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"))
    config.write_text(config.read_text().replace('listen: "127.0.0.1:0", allowed', f'listen: "127.0.0.1:{port}", allowed'))
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agi_daemon", "run", "-c", str(config), stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
        async with asyncio.timeout(15):
            err = (await process.stderr.read()).decode()
            assert await process.wait() == 1
    finally:
        taken.close()
    last = err.strip().splitlines()[-1]
    assert last.startswith("agi-daemon: cannot start:") and str(port) in last
    assert "Traceback" not in err
