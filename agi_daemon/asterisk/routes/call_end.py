"""Route `call-end`: the hangup handler reports how the call ended; the call is logged (R12).

Asterisk sends everything as AGI arguments (variables.CALL_END_ARGS) and needs no answer,
so the session ends before the CRM is written.
"""
from __future__ import annotations

from ...services.call_log import CallLogService
from ...services.pending import PendingWork
from ..agi import AgiSession
from ..variables import CALL_END_ARGS


class CallEndRoute:
    def __init__(self, call_log: CallLogService, pending: PendingWork) -> None:
        self._call_log = call_log
        self._pending = pending

    async def __call__(self, session: AgiSession) -> None:
        values = dict(zip(CALL_END_ARGS, session.request.args))
        key = f"call-end:{values.get('linkedid') or session.request.uniqueid}"
        self._pending.start(key, self._call_log.call_ended(values))
