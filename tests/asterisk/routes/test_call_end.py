"""The call-end route: the hangup handler's AGI arguments -> HangupReport, and its session held
open until the report is stored."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import json
import re
import subprocess
import sys

import pytest

from agi_daemon.asterisk.agi import AgiRequest, AgiSession
from agi_daemon.asterisk.routes.call_end import CallEndRoute, hangup_report
from agi_daemon.core.model import Direction
from agi_daemon.core.outcome import HangupReport
from agi_daemon.core.rules import CallEntry
from agi_daemon.services.pending import PendingWork
from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import UNKNOWN, write_config
from tests.fakes.fastagi import agi_call
from tests.faults.daemon_process import daemon_process


def test_hangup_arguments_become_a_typed_report():
    report = hangup_report({"linkedid": "L1", "status": "ok", "direction": "outgoing", "exten": "0611223344",
                            "callerid": "101", "dialstatus": "answer", "answered_ms": "12500",
                            "peer": "0611223344@trunk", "t0": "1764000000.250"})
    assert report.entry == CallEntry(Direction.OUTGOING, "0611223344", "101")
    assert (report.linkedid, report.status, report.dialstatus, report.peer) == ("L1", "ok", "ANSWER", "0611223344@trunk")
    assert report.answered_seconds == 12.5
    assert report.started_at == datetime(2025, 11, 24, 16, 0, 0, 250000, tzinfo=timezone.utc)


@pytest.mark.parametrize("values", [{}, {"direction": "sideways", "t0": "yesterday", "answered_ms": "x"}, {"t0": "1e300"},
                                    {"answered_ms": "inf"}, {"answered_ms": "1e308"}, {"answered_ms": "nan"},
                                    {"answered_ms": "-inf"}, {"answered_ms": "9" * 400}])
def test_missing_or_garbled_arguments_give_an_incoming_report_with_unknown_times(values):
    report = hangup_report(values, fallback_linkedid="1700000000.1")
    assert report.linkedid == "1700000000.1" and report.direction is Direction.INCOMING
    assert report.started_at is None and report.answered_seconds is None


@pytest.mark.parametrize("answered_ms", ["inf", "1e308"])
async def test_hangup_report_with_absurd_answered_time_still_logs_the_call(tmp_path, answered_ms):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"))
    linkedid = f"1700000000.{len(answered_ms)}"
    args = (linkedid, "ok", "incoming", "0184880000", UNKNOWN, "ANSWER", answered_ms, "101@employees", "1764000000.250")
    async with daemon_process(config) as daemon:
        await agi_call(daemon.port, "call-end", extension="h", callerid=UNKNOWN, args=args)
        await daemon.said(f"call {re.escape(linkedid)}.*logged")
        await daemon.stopped()
    listed = subprocess.run([sys.executable, "-m", "agi_daemon", "crm", "list", "calls", "-c", str(config), "--json"],
                            capture_output=True, text=True, timeout=30, check=True)
    [call] = json.loads(listed.stdout)
    assert (call["linkedid"], call["disposition"], call["answered_by"]) == (linkedid, "answered", "alice")
    assert "Traceback" not in daemon.log


class SlowCallLog:
    """A call log whose store answers when the test says so."""

    def __init__(self) -> None:
        self.stored = asyncio.Event()
        self.reports: list[HangupReport] = []

    async def call_ended(self, report: HangupReport) -> None:
        await self.stored.wait()
        self.reports.append(report)


def call_end_session(linkedid: str) -> AgiSession:
    request = AgiRequest.from_env({"agi_request": "agi://127.0.0.1/call-end", "agi_uniqueid": linkedid,
                          "agi_arg_1": linkedid, "agi_arg_2": "ok"})
    return AgiSession(request, transport=None, command_timeout=1.0)  # type: ignore[arg-type]  # sends no command


async def test_the_session_ends_once_the_report_is_stored():
    call_log = SlowCallLog()
    async with asyncio.TaskGroup() as group:
        route = CallEndRoute(call_log, PendingWork(group.create_task), stored_within=30)  # type: ignore[arg-type]
        session = group.create_task(route(call_end_session("L7")))
        await asyncio.sleep(0.2)
        assert not session.done()  # the report is not stored yet: Asterisk's session stays open
        call_log.stored.set()
        await asyncio.wait_for(session, 5)
    assert [report.linkedid for report in call_log.reports] == ["L7"]


async def test_a_report_that_cannot_be_stored_in_time_ends_the_session_and_is_stored_later():
    call_log = SlowCallLog()
    async with asyncio.TaskGroup() as group:
        route = CallEndRoute(call_log, PendingWork(group.create_task), stored_within=0.2)  # type: ignore[arg-type]
        await asyncio.wait_for(route(call_end_session("L8")), 5)  # ended, the store still waiting
        assert call_log.reports == []
        call_log.stored.set()
    assert [report.linkedid for report in call_log.reports] == ["L8"]  # the call's pending work went on
