"""The FastAGI wire format, sans-IO: bytes in, values out; no sockets, no asyncio.

A FastAGI session, as Asterisk's res_agi.c speaks it:

1. Asterisk connects and sends the header: ``agi_name: value`` lines ended by an empty line.
2. The server sends one command line (``SET VARIABLE "NAME" "value"\\n``) and Asterisk answers
   ``200 result=1``, ``200 result=1 (data) endpos=..``, ``510 Invalid or unknown command``,
   ``511 Command Not Permitted on a dead channel`` or a ``520-`` usage block ending with
   ``520 End of proper usage.``; then the next command, and so on.
3. When the channel hangs up, Asterisk sends a lone ``HANGUP`` line, whenever that happens:
   between commands, or before the reply to the command in flight.

Text is decoded as UTF-8 with ``errors="replace"``: a stray byte in a caller name becomes
U+FFFD instead of dropping the call's routing.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import urlsplit

from agi_daemon.core.phone import masked

#: Asterisk reads a command into a 2048-byte buffer (AGI_BUF_LEN) with fgets: a longer line
#: is cut and its remainder runs as a second command. 2047 bytes, newline included, is the most
#: that arrives whole.
MAX_COMMAND_BYTES = 2047
DEFAULT_MAX_HEADER_BYTES = 16384
DEFAULT_MAX_HEADER_LINES = 256
DEFAULT_MAX_REPLY_LINE_BYTES = 8192
DEFAULT_MAX_USAGE_LINES = 512

_HEADER_LINE = re.compile(rb"[A-Za-z0-9_]+:[^\n]*")
_HEADER_LINES = re.compile(rb"(?:[A-Za-z0-9_]+:[^\n]*\n)*")
_HEADER_END = re.compile(rb"\n\r?\n")
_VARIABLE_NAME = re.compile(r"[A-Za-z0-9_()]+")
_COMMAND = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")
_REPLY = re.compile(r"(\d{3})(?:([ -])(.*))?")
_RESULT = re.compile(r"result=(-?\d+)(?: \((.*)\))?(?: .*)?")
_USAGE_END = "520 End of proper usage."
_DIGIT_RUN = re.compile(r"\d{5,}")
# CR and LF would end the command line early; NUL ends Asterisk's C string.
_LINE_BREAKERS = str.maketrans({"\r": " ", "\n": " ", "\0": " "})


class AgiError(Exception):
    """Base of every AGI error."""


class AgiProtocolError(AgiError):
    """The peer broke the FastAGI protocol (bad, oversized or truncated header or reply)."""


@dataclass(frozen=True, slots=True, repr=False)
class AgiRequest:
    """The header Asterisk sends when a FastAGI session starts.

    Missing variables are empty strings; values are kept as Asterisk sends them (a caller ID
    Asterisk does not know stays "unknown"). ``repr`` shows the route, the uniqueid and the
    redacted channel only, so that logging a request never prints a phone number in full.
    """

    route: str  # "incoming" for agi://host:port/incoming?x=1
    args: tuple[str, ...]  # agi_arg_1 .. agi_arg_N
    channel: str
    uniqueid: str
    callerid: str
    calleridname: str
    context: str
    extension: str
    priority: str
    dnid: str
    env: Mapping[str, str] = field(hash=False)  # every header variable, read-only

    def __repr__(self) -> str:
        return f"AgiRequest(route={self.route!r}, uniqueid={self.uniqueid!r}, channel={redact(self.channel)!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgiRequest:
        """Build a request from the header variables (``agi_request`` -> value)."""
        frozen = MappingProxyType(dict(env))
        args: list[str] = []
        while (arg := frozen.get(f"agi_arg_{len(args) + 1}")) is not None:
            args.append(arg)
        return cls(
            route=_route(frozen),
            args=tuple(args),
            channel=frozen.get("agi_channel", ""),
            uniqueid=frozen.get("agi_uniqueid", ""),
            callerid=frozen.get("agi_callerid", ""),
            calleridname=frozen.get("agi_calleridname", ""),
            context=frozen.get("agi_context", ""),
            extension=frozen.get("agi_extension", ""),
            priority=frozen.get("agi_priority", ""),
            dnid=frozen.get("agi_dnid", ""),
            env=frozen,
        )


def redact(channel: str) -> str:
    """A channel name fit for logs: every run of 5 or more digits keeps only its last 4.

    "Local/0612345678@agi-daemon-incoming-00000001;2" -> "Local/…5678@agi-daemon-incoming-…0001;2"
    """
    return _DIGIT_RUN.sub(lambda match: masked(match[0]), channel)


def _route(env: Mapping[str, str]) -> str:
    """The script path without slashes or query: "incoming" for agi://host/incoming?x=1.

    FastAGI sends it as agi_network_script (everything after the host's slash); plain AGI
    only has agi_request.
    """
    script = env.get("agi_network_script")
    if script is None:
        request = env.get("agi_request", "")
        script = urlsplit(request).path if "://" in request else request
    return script.split("?", 1)[0].strip("/")


class HeaderParser:
    """Accumulates the FastAGI header until its empty line; enforces size and line limits.

    ``feed`` returns None until the header is complete, then the AgiRequest. A malformed
    line raises as soon as it is complete. Bytes received after the empty line (a ``HANGUP``
    can follow the header at once) are kept in ``remainder`` for the ReplyParser.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_header_lines: int = DEFAULT_MAX_HEADER_LINES,
    ) -> None:
        self._max_bytes = max_header_bytes
        self._max_lines = max_header_lines
        self._buffer = bytearray()
        self._checked = 0  # the buffer's complete lines up to here are valid header lines
        self._lines = 0
        self._request: AgiRequest | None = None
        self.remainder = b""

    def feed(self, data: bytes) -> AgiRequest | None:
        if self._request is not None:
            raise RuntimeError("the header is already complete; feed replies to a ReplyParser")
        buffer = self._buffer
        buffer += data
        if buffer[:1] == b"\n" or buffer[:2] == b"\r\n":
            raise AgiProtocolError("empty header: no agi_ variables before the empty line")
        end = _HEADER_END.search(buffer, max(0, self._checked - 1))
        size = len(buffer) if end is None else end.end()
        if size > self._max_bytes:
            raise AgiProtocolError(f"header longer than {self._max_bytes} bytes")
        if end is None:
            self._check_lines(buffer.rfind(b"\n") + 1)
            return None
        self._check_lines(end.start() + 1)
        lines = buffer[: end.start()].decode("utf-8", errors="replace").split("\n")
        env: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            env[name] = value.removeprefix(" ").removesuffix("\r")
        if len(env) < len(lines):
            seen: set[str] = set()
            for number, line in enumerate(lines, 1):
                if (name := line.partition(":")[0]) in seen:
                    raise AgiProtocolError(f"header line {number} repeats {name}")
                seen.add(name)
        self._request = AgiRequest.from_env(env)
        self.remainder = bytes(buffer[size:])
        buffer.clear()
        return self._request

    def eof(self) -> None:
        """The peer closed the connection: raise unless the header was complete."""
        if self._request is None:
            raise AgiProtocolError(
                f"connection closed after {len(self._buffer)} header bytes,"
                " before the empty line that ends the header"
            )

    def _check_lines(self, stop: int) -> None:
        """Validate and count the complete lines between the last check and ``stop``."""
        start, buffer = self._checked, self._buffer
        if start >= stop:
            return
        if not _HEADER_LINES.fullmatch(buffer, start, stop):
            for number, line in enumerate(buffer[:stop].split(b"\n"), 1):
                if not _HEADER_LINE.fullmatch(line):
                    raise AgiProtocolError(f"header line {number} is not 'agi_name: value'")
        self._lines += buffer.count(b"\n", start, stop)
        if self._lines > self._max_lines:
            raise AgiProtocolError(f"header has more than {self._max_lines} lines")
        self._checked = stop


@dataclass(frozen=True, slots=True)
class Reply:
    """Asterisk's answer to one command.

    ``result`` and ``data`` come from ``result=N (data)`` (None when absent); ``text`` is the
    reply as received, its lines joined with "\\n" (a 520 usage block has several).
    """

    code: int
    result: str | None
    data: str | None
    text: str


@dataclass(frozen=True, slots=True)
class HangupNotice:
    """The ``HANGUP`` line: the channel hung up; it may arrive before a command's reply."""


class ReplyParser:
    """Splits what Asterisk sends after the header into Reply and HangupNotice values."""

    def __init__(
        self,
        *,
        max_line_bytes: int = DEFAULT_MAX_REPLY_LINE_BYTES,
        max_usage_lines: int = DEFAULT_MAX_USAGE_LINES,
    ) -> None:
        self._max_line = max_line_bytes
        self._max_usage = max_usage_lines
        self._buffer = bytearray()
        self._block: list[str] | None = None  # lines of a "NNN-" block being read
        self._block_code = 0

    def feed(self, data: bytes) -> list[Reply | HangupNotice]:
        self._buffer += data
        out: list[Reply | HangupNotice] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            if end - start > self._max_line:
                raise AgiProtocolError(f"reply line longer than {self._max_line} bytes")
            raw = bytes(self._buffer[start:end]).removesuffix(b"\r")
            start = end + 1
            item = self._line(raw.decode("utf-8", errors="replace"))
            if item is not None:
                out.append(item)
        del self._buffer[:start]
        if len(self._buffer) > self._max_line:
            raise AgiProtocolError(f"reply line longer than {self._max_line} bytes")
        return out

    def eof(self) -> None:
        """The peer closed the connection: raise if a reply was cut short."""
        if self._buffer or self._block is not None:
            raise AgiProtocolError("connection closed in the middle of a reply")

    def _line(self, line: str) -> Reply | HangupNotice | None:
        if self._block is not None:
            return self._block_line(line)
        if line == "HANGUP":
            return HangupNotice()
        match = _REPLY.fullmatch(line)
        if match is None:
            raise AgiProtocolError(f"unexpected line from Asterisk: {line[:80]!r}")
        code, separator, rest = int(match[1]), match[2], match[3] or ""
        if separator == "-":
            self._block, self._block_code = [line], code
            return None
        result = _RESULT.fullmatch(rest)
        if result is None:
            return Reply(code, None, None, line)
        return Reply(code, result[1], result[2], line)

    def _block_line(self, line: str) -> Reply | None:
        assert self._block is not None
        self._block.append(line)
        # Asterisk writes the usage text as is: when it lacks a final newline the end marker
        # shares the usage's last line.
        if line.startswith(f"{self._block_code} ") or line.endswith(_USAGE_END):
            reply = Reply(self._block_code, None, None, "\n".join(self._block))
            self._block = None
            return reply
        if len(self._block) > self._max_usage:
            raise AgiProtocolError(f"multi-line reply longer than {self._max_usage} lines")
        return None


def quote(value: str | int) -> str:
    """One command argument as Asterisk's parse_args reads it: in double quotes, with
    backslashes and quotes escaped; CR, LF and NUL become spaces so a value can never end the
    command line and start another."""
    text = str(value).translate(_LINE_BREAKERS)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_command(command: str, *values: str | int) -> bytes:
    """One command line: ``command`` holds the command's own words (``"SET VARIABLE"``),
    written bare; every value after it is quoted with ``quote``.

    Raises ValueError for a command that is not plain words, or a line longer than
    MAX_COMMAND_BYTES (Asterisk would run its tail as a second command).
    """
    if not _COMMAND.fullmatch(command):
        raise ValueError(f"not an AGI command: {command!r}")
    line = " ".join([command, *map(quote, values)]) + "\n"
    data = line.encode("utf-8", errors="replace")
    if len(data) > MAX_COMMAND_BYTES:
        raise ValueError(
            f"{command} command of {len(data)} bytes; Asterisk reads at most {MAX_COMMAND_BYTES}"
        )
    return data


def _variable_name(name: str) -> str:
    if not _VARIABLE_NAME.fullmatch(name):
        raise ValueError(f"not a channel variable name: {name!r}")
    return name


def set_variable(name: str, value: str) -> bytes:
    """``SET VARIABLE "NAME" "value"``; Asterisk answers ``200 result=1``."""
    return encode_command("SET VARIABLE", _variable_name(name), value)


# What MSet's argument parsing would split on or unescape, or Asterisk could read as an
# expression (${...}, $[...]): such a value goes by SET VARIABLE, which takes it literally.
_MSET_UNSAFE = re.compile(r'[,"\\()|\[\]{}$\x00-\x1f]')


@lru_cache(maxsize=1024)  # pure; a line's answers repeat (the same responsible, the same queue)
def set_variables(pairs: tuple[tuple[str, str], ...]) -> bytes | None:
    """Every variable in one round trip: ``EXEC MSet "A=1,B=2"``; Asterisk answers
    ``200 result=0``. None when a value holds a character MSet would split on (the caller
    then sends one SET VARIABLE each) or when the line would be too long."""
    if any(_MSET_UNSAFE.search(value) for _, value in pairs):
        return None
    assignments = ",".join(f"{_variable_name(name)}={value}" for name, value in pairs)
    try:
        return encode_command("EXEC", "MSet", assignments)
    except ValueError:
        return None


def get_variable(name: str) -> bytes:
    """``GET VARIABLE "NAME"``; ``200 result=1 (value)`` when set, ``200 result=0`` when not.

    The name may be a dialplan function such as ``CHANNEL(linkedid)``.
    """
    return encode_command("GET VARIABLE", _variable_name(name))


def verbose(message: str, level: int = 1) -> bytes:
    """``VERBOSE "message" level``: a line in Asterisk's console at verbosity 1 to 4."""
    if level not in (1, 2, 3, 4):
        raise ValueError(f"verbose level must be 1 to 4, not {level!r}")
    return encode_command("VERBOSE", message, level)
