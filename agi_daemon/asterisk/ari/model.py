"""What the ARI client hands on: events as Asterisk sent them (the JSON object, read-only) and
the snapshot of live channels and bridges taken after each (re)connection. The translators
(`translate`, `stasis`) turn them into the core's frozen types; nothing past them sees JSON."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

Json = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AriEvent:
    type: str  # "ChannelCreated", "Dial", "StasisStart" ...
    body: Json  # the whole event object
    received_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class AriResync:
    """GET /channels and GET /bridges, right after the events WebSocket (re)connected."""

    channels: tuple[Json, ...]
    bridges: tuple[Json, ...]
    received_at: float


AriItem = Union[AriEvent, AriResync]
