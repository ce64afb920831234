"""Hangup reports kept in the daemon's store (crm.kept_reports), on SQLite and PostgreSQL:
read back as they were kept, once per call, each daemon of a shared database its own."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agi_daemon.core.model import Direction
from agi_daemon.core.outcome import HangupReport
from agi_daemon.core.rules import CallEntry
from agi_daemon.crm.kept_reports import StoreKeptReports

pytestmark = pytest.mark.databases("sqlite", "postgresql")

ENDED = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def report(linkedid: str, **changes) -> HangupReport:
    fields = dict(linkedid=linkedid, status="fallback", entry=CallEntry(Direction.INCOMING, "0184880000", "0611223344"),
                  dialstatus="ANSWER", answered_seconds=12.5, peer="101@employees",
                  started_at=datetime(2026, 12, 2, 9, 29, tzinfo=UTC))
    return HangupReport(**{**fields, **changes})


async def test_a_kept_report_reads_back_as_kept_once_and_goes_when_forgotten(crm):
    paris, lyon = StoreKeptReports(crm, "paris"), StoreKeptReports(crm, "lyon")
    await paris.keep(report("1700000000.1"), ENDED)
    await paris.keep(report("1700000000.1", dialstatus="BUSY"), ENDED)  # kept again: the first one stays
    await paris.keep(report("1700000000.2", answered_seconds=None, started_at=None, peer=""), ENDED)
    await lyon.keep(report("1700000000.1"), ENDED)  # the same linkedid on the other PBX
    assert await paris.kept() == [(report("1700000000.1"), ENDED),
                                  (report("1700000000.2", answered_seconds=None, started_at=None, peer=""), ENDED)]
    await paris.forget("1700000000.1")
    assert [kept.linkedid for kept, _ in await paris.kept()] == ["1700000000.2"]
    assert [kept.linkedid for kept, _ in await lyon.kept()] == ["1700000000.1"]
    assert await StoreKeptReports(crm).kept() == []  # a daemon without pbx_id has its own
