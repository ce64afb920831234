"""The seam between Asterisk and call tracking: an `EventSource` gives the tracker's events
(core.tracker.events, the contract), whichever interface they come by.

    asterisk.events: ami   AmiEventSource   AMI events, translated by ami/translate.py
    asterisk.events: ari   AriEventSource   ARI events, translated by ari/translate.py

Both reconnect by themselves and start every connection with a snapshot of the live channels
(`Resynced`); both keep a bounded queue and count what they had to drop.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

from ..core.tracker import TrackerEvent
from .ami import AmiClient
from .ami.translate import tracker_events as ami_tracker_events
from .ari.client import AriClient
from .ari.translate import tracker_events as ari_tracker_events
from .ami.model import AmiItem
from .ari.model import AriItem

Item = TypeVar("Item")


class EventSource(Protocol):
    name: str  # "ami" | "ari", for logs and health

    @property
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def backlog(self) -> int:
        """Items received and not yet read by the tracker."""
        ...

    @property
    def last_error(self) -> str | None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...

    def events(self) -> AsyncIterator[TrackerEvent]: ...


class LinkEventSource(Generic[Item]):
    """An AMI or ARI client, its items translated into the tracker's events."""

    def __init__(self, name: str, client: Any, translate: Callable[[AsyncIterator[Item]], AsyncIterator[TrackerEvent]]) -> None:
        self.name = name
        self.client = client
        self._translate = translate

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    @property
    def reconnects(self) -> int:
        return int(self.client.reconnects)

    @property
    def dropped(self) -> int:
        return int(self.client.dropped)

    @property
    def backlog(self) -> int:
        return int(self.client.queue.qsize())

    @property
    def last_error(self) -> str | None:
        error: str | None = self.client.last_error
        return error

    async def run(self) -> None:
        await self.client.run()

    async def close(self) -> None:
        await self.client.close()

    def events(self) -> AsyncIterator[TrackerEvent]:
        return self._translate(self.client.events())


def AmiEventSource(client: AmiClient) -> LinkEventSource[AmiItem]:  # noqa: N802 - reads as the type it builds
    return LinkEventSource("ami", client, ami_tracker_events)


def AriEventSource(client: AriClient) -> LinkEventSource[AriItem]:  # noqa: N802 - reads as the type it builds
    return LinkEventSource("ari", client, ari_tracker_events)
