"""Hangup reports kept in the daemon's store while their call's CRM work runs (the
`KeptReports` port): a call whose caller is still being looked up when it hangs up (a slow or
unreachable CRM) would otherwise exist only in memory, lost with a daemon killed then.

A report is kept only in that case, and forgotten once the call's log is committed to the
outbox: a call whose CRM work is done when it hangs up writes nothing here.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ..core.model import Direction
from ..core.outcome import HangupReport
from ..core.rules import CallEntry
from .embedded import EmbeddedCrm
from .tables import kept_reports


class StoreKeptReports:
    """`KeptReports` on the daemon's own store; `pbx`: daemon.pbx_id (each daemon of a shared
    database logs its own calls)."""

    def __init__(self, store: EmbeddedCrm, pbx: str | None = None) -> None:
        self._store = store
        self._pbx = pbx or ""

    async def keep(self, report: HangupReport, ended_at: datetime) -> None:
        row = {"pbx": self._pbx, "linkedid": report.linkedid, "report": report_json(report), "ended_at": ended_at}

        def add(conn: Connection) -> None:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(dialect.insert(kept_reports).values(row).on_conflict_do_nothing(
                index_elements=["pbx", "linkedid"]))

        await self._store.transaction("keep a hangup report", add, write=True)

    async def forget(self, linkedid: str) -> None:
        def remove(conn: Connection) -> None:
            conn.execute(delete(kept_reports).where(kept_reports.c.pbx == self._pbx,
                                                    kept_reports.c.linkedid == linkedid))

        await self._store.transaction("forget a hangup report", remove, write=True)

    async def kept(self) -> list[tuple[HangupReport, datetime]]:
        def read(conn: Connection) -> list[tuple[HangupReport, datetime]]:
            rows = conn.execute(select(kept_reports.c.report, kept_reports.c.ended_at)
                                .where(kept_reports.c.pbx == self._pbx).order_by(kept_reports.c.id))
            return [(report_from_json(row.report), row.ended_at) for row in rows]

        return await self._store.transaction("read the kept hangup reports", read, write=False)


def report_json(report: HangupReport) -> dict[str, Any]:
    return {
        "linkedid": report.linkedid, "status": report.status, "direction": report.entry.direction.value,
        "exten": report.entry.exten, "caller_id": report.entry.caller_id, "dialstatus": report.dialstatus,
        "answered_seconds": report.answered_seconds, "peer": report.peer,
        "started_at": report.started_at.isoformat() if report.started_at else None,
    }


def report_from_json(data: dict[str, Any]) -> HangupReport:
    return HangupReport(
        linkedid=data["linkedid"], status=data["status"],
        entry=CallEntry(Direction(data["direction"]), data["exten"], data["caller_id"]),
        dialstatus=data["dialstatus"], answered_seconds=data["answered_seconds"], peer=data["peer"],
        started_at=datetime.fromisoformat(data["started_at"]) if data["started_at"] else None,
    )
