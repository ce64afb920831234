"""What `agi-daemon run` writes to its log at start and stop, as an admin reads it."""
import asyncio
import os
import signal
import sys

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import write_config


async def test_start_logs_one_ready_summary_without_library_chatter_and_stop_says_so(tmp_path):
    ami_port = closed_port()
    config = write_config(tmp_path, ami=(ami_port, "agi-daemon", "very-secret-ami"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agi_daemon", "run", "-c", str(config),
        stderr=asyncio.subprocess.PIPE, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen: list[str] = []
    try:
        async with asyncio.timeout(15):
            while not any(" ready: " in line for line in seen):
                line = (await process.stderr.readline()).decode()
                assert line, "".join(seen)
                seen.append(line)
        ready = next(line for line in seen if " ready: " in line)
        assert "FastAGI on 127.0.0.1:" in ready
        assert "2 lines, 2 employees, 1 queue group," in ready
        assert f"CRM {tmp_path / 'crm.sqlite3'}" in ready and f"AMI 127.0.0.1:{ami_port}" in ready
        assert not [line for line in seen if "alembic" in line], seen
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            rest = (await process.stderr.read()).decode().splitlines()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert any("SIGTERM: stopping" in line for line in rest), rest
    assert rest[-1].endswith("agi-daemon stopped"), rest
    assert "very-secret-ami" not in "".join(seen + rest)


async def test_start_in_ari_mode_names_the_stasis_application_and_never_logs_the_password(tmp_path):
    port = closed_port()
    config = write_config(tmp_path, ari=(f"http://127.0.0.1:{port}", "agi-daemon", "very-secret-ari"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agi_daemon", "run", "-c", str(config),
        stderr=asyncio.subprocess.PIPE, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen: list[str] = []
    try:
        async with asyncio.timeout(15):
            while not (any(" ready: " in line for line in seen)
                       and any("ARI http://" in line and "retrying in" in line for line in seen)):
                line = (await process.stderr.readline()).decode()
                assert line, "".join(seen)
                seen.append(line)
        ready = next(line for line in seen if " ready: " in line)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            rest = (await process.stderr.read()).decode().splitlines()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert f"Stasis application agi-daemon and call tracking over ARI http://127.0.0.1:{port}" in ready
    assert "very-secret-ari" not in "".join(seen + rest)
