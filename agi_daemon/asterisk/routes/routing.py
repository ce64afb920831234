"""Routes `incoming` and `outgoing`: ask the routing service, answer with channel variables.

incoming: EXTEN is the line, the caller ID the client. outgoing: EXTEN is the number the
employee dialled, the caller ID their extension. Either way the dialplan passes the call's
linkedid as the first argument.
"""
from __future__ import annotations

import logging
from typing import Protocol

from ...core.decisions import Decision
from ...core.model import Direction
from ...core.rules import CallEntry
from ..agi import AgiSession
from . import answer

log = logging.getLogger(__name__)


class Router(Protocol):
    """What the routes ask: the routing service, or the same wrapped (timed for /metrics)."""

    async def route(self, entry: CallEntry, linkedid: str) -> Decision: ...


class RoutingRoute:
    def __init__(self, routing: Router, direction: Direction) -> None:
        self._routing = routing
        self._direction = direction

    async def __call__(self, session: AgiSession) -> None:
        request = session.request
        linkedid = request.args[0] if request.args and request.args[0] else request.uniqueid
        entry = CallEntry(self._direction, request.extension, request.callerid)
        try:
            decision = await self._routing.route(entry, linkedid)
        except Exception:
            log.exception("call %s: %s routing failed, the dialplan falls back", linkedid, self._direction.value)
            await answer.send_error(session)
            return
        await answer.send(session, decision)
