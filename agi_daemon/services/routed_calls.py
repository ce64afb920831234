"""What routing worked out and decided for each call, kept until the hangup report logs it.

The hangup report (R12) must describe the call that happened: the line, the external number
and the employees that routing chose when the call came in, not what the rules (maybe
reloaded since) would choose at hangup time. Bounded: the oldest calls are forgotten first,
so calls whose hangup report never comes cannot grow it.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..core.decisions import Route
from ..core.model import EntityRef
from ..core.rules import CallFacts

CAPACITY = 20_000  # calls in progress remembered; far beyond a PBX's concurrent calls


@dataclass(frozen=True)
class RoutedCall:
    call: CallFacts
    route: Route | None
    client: EntityRef | None = None  # the known client's record the lookup found in time


class RoutedCalls:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._calls: OrderedDict[str, RoutedCall] = OrderedDict()
        self._capacity = capacity

    def remember(self, call: CallFacts, route: Route | None, client: EntityRef | None = None) -> None:
        self._calls[call.linkedid] = RoutedCall(call, route, client)
        self._calls.move_to_end(call.linkedid)
        while len(self._calls) > self._capacity:
            self._calls.popitem(last=False)

    def pop(self, linkedid: str) -> RoutedCall | None:
        """What routing decided for `linkedid`, forgotten from now on; None if it did not."""
        return self._calls.pop(linkedid, None)

    def __len__(self) -> int:
        return len(self._calls)
