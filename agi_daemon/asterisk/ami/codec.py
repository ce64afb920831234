"""Sans-IO AMI codec: bytes in, header blocks out; actions in, bytes out. No sockets, no asyncio.

The AMI text protocol: after a one-line banner (``Asterisk Call Manager/9.0.0``), every
message is a block of ``Key: Value`` lines ended by ``\\r\\n`` and closed by an empty line.
Since Asterisk 14 even ``Command`` output comes as headers (``Output:`` lines), so a block is
all there is; the legacy ``Response: Follows`` body is not supported.

A block is decoded as UTF-8 only once it is complete, so a character split across two TCP
reads is never damaged. With a ``wanted`` predicate the parser drops an unsolicited event
(one without an ``ActionID``) whose name is not wanted before decoding or splitting it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import overload

from .errors import AmiProtocolError

BANNER_PREFIX = "Asterisk Call Manager/"
_EOL = b"\r\n"
_END = b"\r\n\r\n"
_EVENT = b"Event: "
_ACTION_ID = b"ActionID:"


class AmiFields(Mapping[str, str]):
    """The headers of one AMI message: read-only, keys case-insensitive (``Uniqueid`` and
    ``UniqueID`` both occur on the wire), original spelling kept for iteration. A header
    repeated in one message (``Output``, ``ChanVariable``) holds its values joined by newlines.
    """

    __slots__ = ("_values", "_keys")

    def __init__(self, source: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        values: dict[str, str] = {}
        keys: list[str] = []
        for key, value in source.items() if isinstance(source, Mapping) else source:
            folded = key.lower()
            if folded in values:
                values[folded] = f"{values[folded]}\n{value}"
            else:
                values[folded] = value
                keys.append(key)
        self._values = values  # lower-cased key -> value
        self._keys = keys  # original spelling, in order

    def __getitem__(self, key: str) -> str:
        return self._values[key.lower()]

    @overload  # type: ignore[override]
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    @overload
    def get(self, key: str, default: None) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None:
        return self._values.get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        """Equal to another mapping with the same keys (ignoring case) and values."""
        if not isinstance(other, Mapping):
            return NotImplemented
        if not isinstance(other, AmiFields):
            other = AmiFields(other)
        return self._values == other._values

    def __hash__(self) -> int:
        return hash(frozenset(self._values.items()))

    def __repr__(self) -> str:
        return f"AmiFields({dict(self.items())!r})"


class AmiParser:
    """Feed it the bytes read from the socket; it returns the complete messages they finish.

    Raises `AmiProtocolError` when the first line is not an AMI banner or when a message grows
    beyond ``max_message`` bytes without ending; the connection is then unusable.
    """

    def __init__(self, *, wanted: Callable[[str], bool] | None = None,
                 max_message: int = 1 << 20) -> None:
        self.banner: str | None = None
        self._wanted = wanted
        self._max = max_message
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for a terminator

    def feed(self, data: bytes) -> list[AmiFields]:
        buffer = self._buffer
        buffer += data
        start = 0
        if self.banner is None:
            end = buffer.find(_EOL)
            if end < 0:
                self._check_size(len(buffer))
                return []
            banner = bytes(buffer[:end]).decode("utf-8", "replace")
            if not banner.startswith(BANNER_PREFIX):
                raise AmiProtocolError(f"not an AMI peer; first line: {banner[:60]!r}")
            self.banner = banner
            start = end + len(_EOL)
            self._scanned = start
        messages: list[AmiFields] = []
        while True:
            end = buffer.find(_END, max(start, self._scanned - len(_END) + 1))
            if end < 0:
                break
            message = self._parse(bytes(buffer[start:end]))
            if message is not None:
                messages.append(message)
            start = end + len(_END)
        del buffer[:start]
        self._scanned = len(buffer)
        self._check_size(len(buffer))
        return messages

    def _check_size(self, size: int) -> None:
        if size > self._max:
            raise AmiProtocolError(f"AMI message longer than {self._max} bytes")

    def _parse(self, block: bytes) -> AmiFields | None:
        if self._wanted is not None and block.startswith(_EVENT) and _ACTION_ID not in block:
            end = block.find(_EOL)
            name = block[len(_EVENT):end if end >= 0 else len(block)]
            if not self._wanted(name.decode("utf-8", "replace").strip()):
                return None
        fields = AmiFields.__new__(AmiFields)
        values: dict[str, str] = {}
        keys: list[str] = []
        for line in block.decode("utf-8", "replace").split("\r\n"):
            key, colon, value = line.partition(":")
            if not colon or not key:
                continue
            if value[:1] == " ":
                value = value[1:]
            folded = key.lower()
            if folded in values:
                values[folded] = f"{values[folded]}\n{value}"
            else:
                values[folded] = value
                keys.append(key)
        if not keys:
            return None
        fields._values = values
        fields._keys = keys
        return fields


def encode_action(name: str, action_id: str,
                  fields: Mapping[str, str | Sequence[str]] | None = None) -> bytes:
    """One action as bytes: ``Action``, ``ActionID``, then ``fields`` in order. A sequence
    value repeats its header (``Variable: A=1``, ``Variable: B=2``).

    Raises ValueError on a CR or LF in any key or value (header injection) or a malformed key.
    """
    lines = [_line("Action", name), _line("ActionID", action_id)]
    for key, value in (fields or {}).items():
        for item in (value,) if isinstance(value, str) else value:
            lines.append(_line(key, item))
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8")


def _line(key: str, value: str) -> str:
    if not key or any(c in key for c in ": \t\r\n"):
        raise ValueError(f"invalid AMI header name {key!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"AMI header {key} holds a line break")
    return f"{key}: {value}"
