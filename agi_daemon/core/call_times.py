"""How long a call rang and talked (R12), the one place both call records (the hangup report's
and call tracking's) work it out."""
from __future__ import annotations

from datetime import datetime


def ring_and_talk(started_at: datetime, answered_at: datetime | None, ended_at: datetime) -> tuple[float, float]:
    """(ring_seconds, talk_seconds), to the millisecond: it rang from the start until the answer
    (or the end, when nobody answered) and talked from the answer to the end; never negative."""
    ring_end = answered_at or ended_at
    ring = round(max(0.0, (ring_end - started_at).total_seconds()), 3)
    talk = round(max(0.0, (ended_at - answered_at).total_seconds()), 3) if answered_at is not None else 0.0
    return ring, talk
