"""The daemon as a PBX admin runs it, for the fault tests: a real `agi-daemon run` process
whose log is read as it comes.

    async with daemon_process(config) as daemon:
        await daemon.said(r"reload refused")
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from pathlib import Path


class DaemonProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.port = 0

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace"))
            self._new_line.set()
        self._new_line.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    async def said(self, pattern: str, *, after: int = 0, timeout: float = 10.0) -> re.Match[str]:
        """The first log line from index `after` on matching `pattern`, waiting up to `timeout` s."""
        async with asyncio.timeout(timeout):
            seen = after
            while True:
                for line in self.lines[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.lines)
                if self._reader.done():
                    raise AssertionError(f"the daemon exited without saying {pattern!r}; it said:\n{self.log}")
                self._new_line.clear()
                await self._new_line.wait()

    def rss_mb(self) -> float:
        """The process's resident memory, in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    async def stopped(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit code (AssertionError when it does not stop in time)."""
        self.process.terminate()
        try:
            async with asyncio.timeout(timeout):
                code = await self.process.wait()
                await self._reader
        except TimeoutError:
            raise AssertionError(f"SIGTERM did not stop the daemon within {timeout:g} s; it said:\n{self.log}") from None
        return code


@contextlib.asynccontextmanager
async def daemon_process(config: Path, *args: str):
    """`agi-daemon run -c config`, ready (FastAGI port known) when the body runs; killed after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agi_daemon", "run", "-c", str(config), *args,
        stderr=asyncio.subprocess.PIPE, cwd=config.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    daemon = DaemonProcess(process)
    try:
        daemon.port = int((await daemon.said(r"FastAGI listening on [^:]+:(\d+)"))[1])
        yield daemon
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        daemon._reader.cancel()
