"""Route `outgoing`: EXTEN is the number the employee dialled, the caller ID their extension."""
from __future__ import annotations

import logging

from ...services.routing import RoutingService
from ..agi import AgiSession
from . import answer

log = logging.getLogger(__name__)


class OutgoingRoute:
    def __init__(self, routing: RoutingService) -> None:
        self._routing = routing

    async def __call__(self, session: AgiSession) -> None:
        request = session.request
        linkedid = request.args[0] if request.args and request.args[0] else request.uniqueid
        try:
            decision = await self._routing.route_outgoing(request.callerid, request.extension, linkedid)
        except Exception:
            log.exception("call %s: outgoing routing failed, the dialplan falls back", linkedid)
            await answer.send_error(session)
            return
        await answer.send(session, decision)
