"""Hangup reports kept in the daemon's store (crm.kept_reports), on SQLite and PostgreSQL:
read back as they were kept, once per call; a restarted daemon takes those of the run that
stopped, never those another running daemon of a shared database is still logging."""
from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from agi_daemon.core.model import Direction
from agi_daemon.core.outcome import HangupReport
from agi_daemon.core.rules import CallEntry
from agi_daemon.crm.kept_reports import ORPHANED_AFTER, StoreKeptReports

pytestmark = pytest.mark.databases("sqlite", "postgresql")

ENDED = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
STOPPED = f"{socket.gethostname()}:999999999:1"  # a run of this host whose pid no longer runs
ELSEWHERE = "pbx-b.example.com:4242:1"  # a daemon of another host, running for all we know


def report(linkedid: str, **changes) -> HangupReport:
    fields = dict(linkedid=linkedid, status="fallback", entry=CallEntry(Direction.INCOMING, "0184880000", "0611223344"),
                  dialstatus="ANSWER", answered_seconds=12.5, peer="101@employees",
                  started_at=datetime(2026, 12, 2, 9, 29, tzinfo=UTC))
    return HangupReport(**{**fields, **changes})


async def test_a_restart_takes_the_reports_of_the_run_that_stopped_once_and_forgets_them_when_logged(crm):
    stopped = StoreKeptReports(crm, "paris", owner=STOPPED)
    bare = report("1700000000.2", answered_seconds=None, started_at=None, peer="")
    await stopped.keep(report("1700000000.1"), ENDED)
    await stopped.keep(report("1700000000.1", dialstatus="BUSY"), ENDED)  # kept again: the first one stays
    await stopped.keep(bare, ENDED)
    await StoreKeptReports(crm, "lyon", owner=STOPPED).keep(report("1700000000.1"), ENDED)  # another PBX's
    restarted = StoreKeptReports(crm, "paris")  # this process
    await restarted.keep(report("1700000000.3"), ENDED)  # a call of this run: its own, logged by it

    assert await restarted.kept() == [(report("1700000000.1"), ENDED), (bare, ENDED), (report("1700000000.3"), ENDED)]
    await restarted.forget("1700000000.1")
    await StoreKeptReports(crm, "paris", owner=STOPPED).forget("1700000000.2")  # no longer the stopped run's
    # its own, handed again until forgotten (whoever logs them skips those it is logging)
    assert [kept.linkedid for kept, _ in await restarted.kept()] == ["1700000000.2", "1700000000.3"]
    # the next run of the same pid (a container's pid 1, restarted): the reports of the run
    # before are its to log, .2 included (a stopped run's forget no longer touches it)
    next_run = StoreKeptReports(crm, "paris")
    assert [kept.linkedid for kept, _ in await next_run.kept()] == ["1700000000.2", "1700000000.3"]
    assert [kept.linkedid for kept, _ in await StoreKeptReports(crm, "lyon").kept()] == ["1700000000.1"]


async def test_another_hosts_report_is_taken_only_once_orphaned(crm):
    now = datetime.now(UTC)
    await StoreKeptReports(crm, "paris", owner=ELSEWHERE, clock=lambda: now).keep(report("1700000000.4"), ENDED)
    assert await StoreKeptReports(crm, "paris").kept() == []  # its daemon may be logging it
    assert await StoreKeptReports(crm, "paris", clock=lambda: now + ORPHANED_AFTER / 2).kept() == []
    later = StoreKeptReports(crm, "paris", clock=lambda: now + ORPHANED_AFTER + timedelta(seconds=1))
    assert [kept.linkedid for kept, _ in await later.kept()] == ["1700000000.4"]
