"""Hangup reports kept in the daemon's store while their call's CRM work runs (the
`KeptReports` port): a call whose caller is still being looked up when it hangs up (a slow or
unreachable CRM) would otherwise exist only in memory, lost with a daemon killed then.

A report is kept only in that case, and forgotten once the call's log is committed to the
outbox: a call whose CRM work is done when it hangs up writes nothing here.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..core.model import Direction
from ..core.outcome import HangupReport
from ..core.rules import CallEntry
from .daemons import running, this_daemon, this_host
from .embedded import EmbeddedCrm
from .tables import kept_reports


# A report another daemon kept this long ago is an orphan (its daemon stopped on another host,
# or its work is stuck far beyond the lookup's retries and the store's waits): it is taken.
ORPHANED_AFTER = timedelta(minutes=10)


class StoreKeptReports:
    """`KeptReports` on the daemon's own store; `pbx`: daemon.pbx_id (each daemon of a shared
    database logs its own calls). Each report names the daemon that kept it: `kept` hands
    over only those of a daemon of this host that no longer runs, and orphans
    (ORPHANED_AFTER), never a report another running daemon is still logging."""

    def __init__(self, store: EmbeddedCrm, pbx: str | None = None, *, owner: str | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._pbx = pbx or ""
        self._clock = clock
        # "host:pid:run": the run (its start, in µs) tells this run from an earlier one that had
        # the same pid (a container's daemon is often pid 1 at every start)
        self._owner = owner or f"{this_daemon()}:{time.time_ns() // 1000}"

    async def keep(self, report: HangupReport, ended_at: datetime) -> None:
        row = {"pbx": self._pbx, "linkedid": report.linkedid, "owner": self._owner, "kept_at": self._clock(),
               "report": report_json(report), "ended_at": ended_at}

        def add(conn: Connection) -> None:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(dialect.insert(kept_reports).values(row).on_conflict_do_nothing(
                index_elements=["pbx", "linkedid"]))

        await self._store.transaction("keep a hangup report", add, write=True)

    async def forget(self, linkedid: str) -> None:
        def remove(conn: Connection) -> None:
            conn.execute(delete(kept_reports).where(kept_reports.c.pbx == self._pbx, kept_reports.c.linkedid == linkedid,
                                                    kept_reports.c.owner == self._owner))

        await self._store.transaction("forget a hangup report", remove, write=True)

    async def kept(self) -> list[tuple[HangupReport, datetime]]:
        """The reports this daemon is to log: those it kept itself (its caller skips those it
        is logging), and those it takes over from a daemon of this host that stopped or from
        an orphan. Taken rows are this daemon's from then on, handed again at the next call
        until forgotten (a read that timed out after taking them loses none)."""
        now = self._clock()
        orphaned = now - ORPHANED_AFTER
        host = this_host()

        def take(conn: Connection) -> list[tuple[HangupReport, datetime]]:
            c = kept_reports.c
            rows = conn.execute(select(c.id, c.owner, c.kept_at, c.report, c.ended_at)
                                .where(c.pbx == self._pbx,
                                       or_(c.owner == self._owner, c.owner.startswith(f"{host}:", autoescape=True),
                                           c.kept_at < orphaned))
                                .order_by(c.id).with_for_update(skip_locked=True)).all()
            taken = [row.id for row in rows if row.owner != self._owner
                     and (row.kept_at < orphaned or self._stopped(row.owner, host))]
            if taken:
                conn.execute(update(kept_reports).where(c.id.in_(taken)).values(owner=self._owner, kept_at=now))
            return [(report_from_json(row.report), row.ended_at) for row in rows
                    if row.owner == self._owner or row.id in taken]

        return await self._store.transaction("take the kept hangup reports", take, write=True)

    def _stopped(self, owner: str, host: str) -> bool:
        """Whether `owner` is a daemon of this host that no longer runs (an earlier run of
        this pid included); a daemon of another host is never known to have stopped."""
        parts = owner.rsplit(":", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            return False
        if int(parts[1]) == os.getpid():
            return owner != self._owner  # this pid, another run
        return not running(f"{parts[0]}:{parts[1]}")


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
