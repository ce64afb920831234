"""How the daemon's log lines are written: one record is one line an admin can trust.

Values that come from outside (a linkedid or caller ID from the dialplan, an AMI field, a
CSV cell, a config value) may hold a carriage return, an ANSI escape sequence or a line
break; written raw they would rewrite the terminal or forge a log line. `SafeFormatter`
escapes every control character of the finished line (`\\r` -> `\\r`, ESC -> `\\x1b`), and
indents the lines after the first of a record (a traceback, a list of config problems), so
no value can start a line that looks like a record of its own.
"""
from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\r": "\\r", "\x1b": "\\x1b", "\x0b": "\\v", "\x0c": "\\f"}
CONTINUATION = "    "


def escape_controls(text: str) -> str:
    """`text` with every control character but tab and line feed written as an escape, and
    every line after the first indented by CONTINUATION."""
    return _CONTROL.sub(_escape, text).replace("\n", "\n" + CONTINUATION)


def _escape(match: re.Match[str]) -> str:
    character = match[0]
    if character in _NAMED:
        return _NAMED[character]
    return f"\\x{ord(character):02x}" if ord(character) < 0x100 else f"\\u{ord(character):04x}"


class SafeFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))
