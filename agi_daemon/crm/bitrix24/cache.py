"""A short read-through memory of who called: number -> the known client (or "unknown"), for
a few seconds, so a caller who calls back at once costs no request. The daemon's own writes
forget what they change (a record created for a number, a new responsible): the operations do
it; a caller that creates records in its own `batch` calls `forget_phone` itself."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from agi_daemon.core.model import EntityType

from .operations import KnownClient


@dataclass(frozen=True)
class _Entry:
    client: KnownClient | None
    until: float


class LookupCache:
    def __init__(self, ttl_seconds: float = 10.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def get(self, phone: str) -> tuple[bool, KnownClient | None]:
        """(True, client or None) when remembered and fresh; (False, None) otherwise."""
        entry = self._entries.get(phone)
        if entry is None:
            return False, None
        if entry.until <= self._clock():
            del self._entries[phone]
            return False, None
        return True, entry.client

    def put(self, phone: str, client: KnownClient | None) -> None:
        if len(self._entries) >= self._max:
            self._entries.pop(next(iter(self._entries)))  # the oldest
        self._entries[phone] = _Entry(client, self._clock() + self._ttl)

    def forget_phone(self, phone: str) -> None:
        """A record was created for this number."""
        self._entries.pop(phone, None)

    def forget_entity(self, entity: EntityType, entity_id: int) -> None:
        """This record changed responsible."""
        for phone, entry in list(self._entries.items()):
            if entry.client is not None and (entry.client.entity, entry.client.entity_id) == (entity, entity_id):
                del self._entries[phone]
