"""The explicit route table: AGI path -> handler. Nothing registers itself on import."""
from __future__ import annotations

from typing import Awaitable, Callable, Mapping

from ...core.model import Direction
from ...services.call_log import CallLogService
from ...services.pending import PendingWork
from .. import variables as v
from ..agi import AgiSession
from .call_end import CallEndRoute
from .routing import Router, RoutingRoute

Handler = Callable[[AgiSession], Awaitable[None]]


def route_table(routing: Router, call_log: CallLogService, pending: PendingWork) -> Mapping[str, Handler]:
    return {
        v.ROUTE_INCOMING: RoutingRoute(routing, Direction.INCOMING),
        v.ROUTE_OUTGOING: RoutingRoute(routing, Direction.OUTGOING),
        v.ROUTE_CALL_END: CallEndRoute(call_log, pending),
    }
