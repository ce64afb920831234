"""Route `call-end`: the hangup handler reports how the call ended; the call is logged (R12).

Asterisk sends everything as AGI arguments (variables.CALL_END_ARGS) and needs no answer,
but the session stays open until the report is stored in the daemon's outbox: once Asterisk
sees it end, nothing ever sends the report again, and a daemon killed (-9, a power cut) before
the store would lose the call's log. Storing takes milliseconds; a report that takes longer
than STORED_WITHIN_S (the store unavailable, a call of an earlier run of the daemon whose
caller is looked up again first) ends the session and goes on as the call's pending work. The
channel has hung up already: the caller waits for none of it.

The arguments become a typed HangupReport here, at the edge: the call log never sees the
dialplan's strings.
"""
from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from datetime import datetime, timezone

from ...core.model import Direction
from ...core.outcome import HangupReport
from ...core.rules import CallEntry
from ...services.call_log import CallLogService
from ...services.pending import PendingWork
from ..agi import AgiSession
from ..variables import CALL_END_ARGS


# How long the hangup handler's session waits for its report to be stored (see above). Short:
# while the store cannot answer (locked, down), each hangup holds one of the FastAGI server's
# sessions (server.max_sessions) that long.
STORED_WITHIN_S = 1.0


class CallEndRoute:
    def __init__(self, call_log: CallLogService, pending: PendingWork, *,
                 stored_within: float = STORED_WITHIN_S) -> None:
        self._call_log = call_log
        self._pending = pending
        self._stored_within = stored_within

    async def __call__(self, session: AgiSession) -> None:
        values = dict(zip(CALL_END_ARGS, session.request.args, strict=False))  # Asterisk may send fewer
        report = hangup_report(values, fallback_linkedid=session.request.uniqueid)
        logging_the_call = self._pending.start(f"call-end:{report.linkedid}", self._call_log.call_ended(report))
        await asyncio.wait([logging_the_call], timeout=self._stored_within)  # the work goes on after a timeout


def hangup_report(values: Mapping[str, str], *, fallback_linkedid: str = "") -> HangupReport:
    """The report from the hangup handler's named arguments; unreadable numbers become None,
    never errors."""
    direction = Direction.OUTGOING if values.get("direction") == Direction.OUTGOING.value else Direction.INCOMING
    return HangupReport(
        linkedid=values.get("linkedid") or fallback_linkedid,
        status=values.get("status", ""),
        entry=CallEntry(direction, values.get("exten", ""), values.get("callerid", "")),
        dialstatus=values.get("dialstatus", "").upper(),
        answered_seconds=_seconds(values.get("answered_ms"), 1000),
        peer=values.get("peer", ""),
        started_at=_epoch(values.get("t0")),
    )


MAX_TALK_SECONDS = 366 * 24 * 3600  # longer is no call: an unreadable value


def _seconds(text: str | None, divisor: int) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    seconds = max(0.0, value) / divisor
    return seconds if math.isfinite(value) and seconds <= MAX_TALK_SECONDS else None  # inf, nan, 1e308


def _epoch(text: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(text or ""), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
