"""Turn a routing Decision into the channel variables the dialplan reads (variables.py)."""
from __future__ import annotations

from typing import Protocol

from ...core.decisions import Decision, RoutingStatus
from .. import variables as v


class VariableSink(Protocol):
    async def set_variable(self, name: str, value: str) -> None: ...

    async def set_variables(self, pairs: list[tuple[str, str]]) -> None: ...


def assignments(decision: Decision) -> list[tuple[str, str]]:
    """Only what the dialplan needs, status last: should they go one by one and the channel
    go away half-way, the dialplan sees no status and falls back rather than acting on a
    partial answer."""
    pairs: list[tuple[str, str]] = []
    route = decision.route
    if route is not None:
        if route.trunk_target:
            pairs.append((v.TRUNK, route.trunk_target))
        if route.responsible_target:
            pairs += [(v.RESPONSIBLE, route.responsible_target), (v.RESPONSIBLE_RING, str(route.responsible_ring))]
        if route.queue_group:
            pairs += [
                (v.QUEUE, "&".join(route.queue_targets)),
                (v.QUEUE_RING, str(route.queue_ring)),
                (v.QUEUE_STRATEGY, route.strategy.value),
            ]
    pairs.append((v.STATUS, decision.status.value))
    return pairs


async def send(session: VariableSink, decision: Decision) -> None:
    """One round trip when the values allow (MSet): every AGI command is a round trip the
    call waits for."""
    await session.set_variables(assignments(decision))


async def send_error(session: VariableSink) -> None:
    """The daemon could not decide: say so, and the dialplan takes its fallback path."""
    await session.set_variable(v.STATUS, RoutingStatus.ERROR.value)
