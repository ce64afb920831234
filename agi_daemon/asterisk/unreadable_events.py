"""The edge's one guard around event translation, for AMI and ARI alike.

A message the translation cannot read (a field of the wrong type, an object where a string
was expected) must cost that one event, never the call tracking task: that task belongs to the
app's TaskGroup, and its failure would stop FastAGI routing with it. The event is skipped and
said once per kind (then summarised): what it was, never what it carried (numbers).
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TypeVar

from ..core.tracker import TrackerEvent
from .repeated_warnings import RepeatedWarnings

log = logging.getLogger(__name__)

Item = TypeVar("Item")


async def readable_events(items: AsyncIterable[Item], translate: Callable[[Item], TrackerEvent | None],
                          link: str, kind: Callable[[Item], str]) -> AsyncIterator[TrackerEvent]:
    """`translate` over `items`, the tracker events they stand for; an item `translate` cannot
    read is skipped with a warning naming the link and the item's `kind`."""
    warnings = RepeatedWarnings(log)
    async for item in items:
        try:
            event = translate(item)
        except Exception as exc:  # noqa: BLE001 - any unreadable message: skip it, keep tracking
            name = kind(item)
            warnings.warning((link, name), "%s: a %s event could not be read (%s), skipped",
                             link, name, type(exc).__name__)
            continue
        if event is not None:
            yield event
