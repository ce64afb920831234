"""What the AMI edge hands to the rest of the daemon: frozen values, never wire dicts.

The event queue carries `AmiItem`s: an `AmiEvent` per kept Asterisk event, and an `AmiResync`
after every (re)connection, listing the channels alive at that moment so call tracking can
re-attach calls whose events were missed while the link was down.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import overload

from .codec import AmiFields


class _Headers:
    """Read access to an AMI message's headers, any case; a plain mapping given to the
    constructor is frozen into AmiFields."""

    __slots__ = ()
    fields: Mapping[str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.fields, AmiFields):
            object.__setattr__(self, "fields", AmiFields(self.fields))

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...

    def get(self, key: str, default: str | None = None) -> str | None:
        """The header's value (any case), or ``default``."""
        return self.fields.get(key, default)


@dataclass(frozen=True, slots=True)
class AmiEvent(_Headers):
    """One Asterisk event. ``fields`` holds every header (``Event`` included), read-only and
    case-insensitive; ``received_at`` is the client clock's reading (epoch seconds by default)
    when the event was read."""

    name: str
    fields: Mapping[str, str]
    received_at: float

    @property
    def linkedid(self) -> str | None:
        """Uniqueid of the oldest channel of the call: the call's identity across transfers."""
        return self.fields.get("Linkedid")

    @property
    def uniqueid(self) -> str | None:
        return self.fields.get("Uniqueid")

    @property
    def channel(self) -> str | None:
        return self.fields.get("Channel")


@dataclass(frozen=True, slots=True)
class AmiResponse(_Headers):
    """Asterisk's answer to an action. For list actions (``Status``, ``CoreShowChannels`` …)
    ``events`` holds the listed items, without the closing ``…Complete`` event."""

    success: bool
    fields: Mapping[str, str]
    events: tuple[AmiEvent, ...] = ()

    @property
    def message(self) -> str:
        return self.fields.get("Message", "")


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    """One live channel as ``CoreShowChannels`` lists it. ``state`` is Asterisk's
    ``ChannelStateDesc`` (``Up``, ``Ringing`` …); ``duration`` is the channel's age in seconds."""

    channel: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    state: str
    caller_id_num: str
    connected_line_num: str
    bridge_id: str
    application: str
    duration: int

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> ChannelSnapshot:
        """From the headers of a ``CoreShowChannel`` event; missing headers become ""."""
        f = fields if isinstance(fields, AmiFields) else AmiFields(fields)
        return cls(
            channel=f.get("Channel", ""),
            uniqueid=f.get("Uniqueid", ""),
            linkedid=f.get("Linkedid", ""),
            context=f.get("Context", ""),
            exten=f.get("Exten", ""),
            state=f.get("ChannelStateDesc", ""),
            caller_id_num=f.get("CallerIDNum", ""),
            connected_line_num=f.get("ConnectedLineNum", ""),
            bridge_id=f.get("BridgeId", ""),
            application=f.get("Application", ""),
            duration=parse_duration(f.get("Duration", "")),
        )


@dataclass(frozen=True, slots=True)
class AmiResync:
    """Published first after every login: the channels alive then. Events that arrive while
    the list is being collected are queued after this item."""

    channels: tuple[ChannelSnapshot, ...]
    received_at: float = 0.0


AmiItem = AmiEvent | AmiResync


def parse_duration(text: str) -> int:
    """Seconds from Asterisk's ``HH:MM:SS`` (or plain seconds); 0 when unreadable."""
    seconds = 0
    for part in text.strip().split(":"):
        if not part.isdigit():
            return 0
        seconds = seconds * 60 + int(part)
    return seconds
