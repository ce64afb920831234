"""The running daemon's log records are written by a thread: a slow log file never holds the
event loop, and nothing logged is lost at stop."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator

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


@contextlib.contextmanager
def only_handler(handler: logging.Handler) -> Iterator[None]:
    """The root logger writes to `handler` alone (as the daemon's log file), then as before."""
    root = logging.getLogger()
    before = root.handlers[:]
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = before


async def test_a_stuck_log_file_does_not_stop_the_loop_and_gets_every_line_at_stop() -> None:
    stuck = StuckFile()
    with only_handler(stuck):
        with logging_off_the_loop():
            started = asyncio.get_running_loop().time()
            for n in range(3):
                logging.getLogger("agi_daemon.test").warning("call %d routed", n)
            await asyncio.sleep(0.01)
            held_for = asyncio.get_running_loop().time() - started
            assert stuck.written == []
            stuck.unstuck.set()
        assert logging.getLogger().handlers == [stuck]

    assert held_for < 1.0
    assert stuck.written == ["call 0 routed", "call 1 routed", "call 2 routed"]


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.written.append((time.monotonic(), record.getMessage()))


async def test_lines_reach_the_log_while_the_daemon_runs_in_order() -> None:
    """The writer thread gathers the lines of a burst before it writes them (one wakeup for
    them all): they still reach the log within a fraction of a second, in order, not at stop."""
    collected = Collected()
    with only_handler(collected):
        with logging_off_the_loop():
            logged_at = time.monotonic()
            for n in range(50):
                logging.getLogger("agi_daemon.test").warning("call %d from %s", n, "…0000")
            while len(collected.written) < 50 and time.monotonic() - logged_at < 2:
                await asyncio.sleep(0.005)
            written = list(collected.written)

    assert [message for _, message in written] == [f"call {n} from …0000" for n in range(50)]
    assert written[-1][0] - logged_at < 0.5  # LOG_GATHER_S (20 ms) later, give or take a busy machine
