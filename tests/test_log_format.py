"""Log lines an admin can trust (issue 12, finding 10): a value from outside cannot rewrite
the terminal nor forge a line."""
from __future__ import annotations

import re

import pytest

from agi_daemon.log_format import escape_controls
from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import UNKNOWN, write_config
from tests.fakes.fastagi import agi_call
from tests.faults.daemon_process import daemon_process


@pytest.mark.parametrize("raw, written", [
    ("1700000000.12", "1700000000.12"),
    ("a\rb", "a\\rb"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("nul\x00 bell\x07 del\x7f c1\x85", "nul\\x00 bell\\x07 del\\x7f c1\\x85"),
    ("line\u2028separator", "line\\u2028separator"),
    ("tab\tstays", "tab\tstays"),
    ("two\nlines", "two\n    lines"),
])
def test_control_characters_are_escaped_and_later_lines_indented(raw, written):
    assert escape_controls(raw) == written


async def test_linkedid_with_carriage_return_and_ansi_codes_is_logged_escaped_by_the_run_process(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"))
    forged = "1700000000.1\r\x1b[2K2026-01-01 00:00:00,000 INFO agi_daemon.app: all good\x1b[0m"
    async with daemon_process(config) as daemon:
        answer = await agi_call(daemon.port, "incoming", extension="0184880000", callerid=UNKNOWN, args=(forged,))
        said = await daemon.said(r"call 1700000000\.1.*created lead")
        await daemon.stopped()

    assert answer["AGI_DAEMON_STATUS"] == "ok"
    assert "\\r\\x1b[2K2026-01-01 00:00:00,000 INFO agi_daemon.app: all good\\x1b[0m from" in said.string
    assert not re.search(r"[\r\x1b]", daemon.log)
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ agi_daemon", line) or line.startswith("    ")
               for line in daemon.lines)
