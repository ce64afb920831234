"""The seam between Asterisk and call tracking: an `EventSource` gives the tracker's events
(core.tracker.events, the contract), whichever interface they come by.

    asterisk.events: ami   AmiEventSource   AMI events, translated by ami/translate.py
    asterisk.events: ari   AriEventSource   ARI events, translated by ari/translate.py

Both reconnect by themselves and start every connection with a snapshot of the live channels
(`Resynced`); both keep a bounded queue and count what they had to drop.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from ..core.tracker import TrackerEvent
from .ami import AmiClient
from .ami.translate import tracker_events as ami_tracker_events
from .ari.client import AriClient
from .ari.translate import tracker_events as ari_tracker_events


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


class AmiEventSource:
    name = "ami"

    def __init__(self, client: AmiClient) -> None:
        self.client = client

    @property
    def connected(self) -> bool:
        return self.client.connected

    @property
    def reconnects(self) -> int:
        return self.client.reconnects

    @property
    def dropped(self) -> int:
        return self.client.dropped

    @property
    def backlog(self) -> int:
        return self.client.queue.qsize()

    @property
    def last_error(self) -> str | None:
        return self.client.last_error

    async def run(self) -> None:
        await self.client.run()

    async def close(self) -> None:
        await self.client.close()

    def events(self) -> AsyncIterator[TrackerEvent]:
        return ami_tracker_events(self.client.events())


class AriEventSource:
    name = "ari"

    def __init__(self, client: AriClient) -> None:
        self.client = client

    @property
    def connected(self) -> bool:
        return self.client.connected

    @property
    def reconnects(self) -> int:
        return self.client.reconnects

    @property
    def dropped(self) -> int:
        return self.client.dropped

    @property
    def backlog(self) -> int:
        return self.client.queue.qsize()

    @property
    def last_error(self) -> str | None:
        return self.client.last_error

    async def run(self) -> None:
        await self.client.run()

    async def close(self) -> None:
        await self.client.close()

    def events(self) -> AsyncIterator[TrackerEvent]:
        return ari_tracker_events(self.client.events())
