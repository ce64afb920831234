"""The running daemon's log records are written by a thread: a slow log file never holds the
event loop, and nothing logged is lost at stop."""
from __future__ import annotations

import asyncio
import logging
import threading

from agi_daemon.app import logging_off_the_loop


class StuckFile(logging.Handler):
    """A log file on a disk that holds every write until `unstuck` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.unstuck = threading.Event()
        self.written: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.unstuck.wait(5)
        self.written.append(record.getMessage())


async def test_a_stuck_log_file_does_not_stop_the_loop_and_gets_every_line_at_stop() -> None:
    root = logging.getLogger()
    stuck = StuckFile()
    before = root.handlers[:]
    root.handlers = [stuck]
    try:
        with logging_off_the_loop():
            started = asyncio.get_running_loop().time()
            for n in range(3):
                logging.getLogger("agi_daemon.test").warning("call %d routed", n)
            await asyncio.sleep(0.01)
            held_for = asyncio.get_running_loop().time() - started
            assert stuck.written == []
            stuck.unstuck.set()
        assert root.handlers == [stuck]
    finally:
        root.handlers = before

    assert held_for < 1.0
    assert stuck.written == ["call 0 routed", "call 1 routed", "call 2 routed"]
