"""Issue 6's acceptance with `crm.adapter: bitrix24`, what only a remote CRM has: the whole
daemon in-process, a real Asterisk 22 placing calls, and the in-test Bitrix24 portal
(tests/crm/bitrix24_portal.py: it checks each request's shape and enforces the 2/s, burst 50
bucket; the `portal` fixture fails the test on a violation or a QUERY_LIMIT_EXCEEDED).

Every scenario of tests/test_app.py and tests/test_app_tracking.py also runs with bitrix24
(their `adapters` marker): records, source, responsible, pipeline, the call's registration
and finish, R10, nothing sent for excluded numbers. Here: the portal down and back.
Run with FastAGI+AMI and SQLite (the daemon's store holds only the outbox and the ledger).
"""
from __future__ import annotations

import asyncio
import time

import pytest

from agi_daemon.crm.registry import CrmParts, build_crm
from agi_daemon.remote_crm import bitrix24_crm
from agi_daemon.settings import SettingsHolder
from tests.crm.bitrix24_portal import Bitrix24Portal
from tests.daemon_harness import Mode, rang, running_daemon
from tests.fakes.polling import eventually

pytestmark = [pytest.mark.asterisk]

PARIS_AS_DIALLED = "0184880000"


@pytest.fixture
def fastagi(employees) -> Mode:
    return Mode("ami", employees)


class TimedLookup:
    """The adapter's lookup, noting when routing first asked about each number (the moment
    the call reached the daemon)."""

    def __init__(self, lookup) -> None:
        self._lookup = lookup
        self.asked_at: dict[str, float] = {}

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def find_by_phone(self, phone):
        self.asked_at.setdefault(phone, time.monotonic())
        return await self._lookup.find_by_phone(phone)


def portal_daemon(employees, config, crm):
    """The daemon with crm.adapter bitrix24, on the test's store (outbox and ledger)."""
    settings = SettingsHolder(config).current
    parts = build_crm("bitrix24", settings.crm.embedded.database, crm, remote=bitrix24_crm(settings))
    parts = CrmParts(parts.store, TimedLookup(parts.lookup), parts.remote)
    return _opened(employees, config, parts)


class _opened:
    def __init__(self, employees, config, parts) -> None:
        self._parts = parts
        self._running = running_daemon(employees, config, parts)

    async def __aenter__(self):
        await self._parts.remote.open()
        daemon = await self._running.__aenter__()
        daemon.timed_lookup = self._parts.lookup
        return daemon

    async def __aexit__(self, *exc):
        try:
            return await self._running.__aexit__(*exc)
        finally:
            await self._parts.remote.close()


def calls_of(portal: Bitrix24Portal, linkedid: str):
    return [call for call in portal.calls.values() if call.params.get("EXTERNAL_CALL_ID") == linkedid]


def finished(portal: Bitrix24Portal, linkedid: str):
    def probe():
        calls = calls_of(portal, linkedid)
        return calls if calls and all(call.finished for call in calls) else None
    return probe


OUTAGE_SECONDS = 60.0
PHASE_SECONDS = OUTAGE_SECONDS / 3  # 503 QUERY_LIMIT_EXCEEDED, then timeouts, then refused connections
CALLS_PER_PHASE = 2


async def test_portal_down_a_minute_calls_are_routed_within_the_deadline_and_every_write_lands_once_when_it_is_back(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal):
    """The portal is down for a minute, a third of it in each way a portal fails: 503
    QUERY_LIMIT_EXCEEDED, then requests that hang and are dropped, then refused connections;
    new numbers call throughout. Each call reaches an employee within the deadline + 100 ms
    of reaching the daemon; once the portal is back, each call is registered, finished and
    has its lead, once."""
    deadline_ms = 300
    config = fastagi.config(tmp_path, deadline_ms=deadline_ms, bitrix24=portal.webhook_url)
    numbers = [f"+336998877{index:02d}" for index in range(3 * CALLS_PER_PHASE)]
    async with portal_daemon(employees, config, crm) as daemon:
        linkedids = []
        outage_began = time.monotonic()
        for index, number in enumerate(numbers):
            phase, within = divmod(index, CALLS_PER_PHASE)
            await asyncio.sleep(max(0.0, outage_began + phase * PHASE_SECONDS
                                    + within * PHASE_SECONDS / CALLS_PER_PHASE - time.monotonic()))
            if within == 0:
                portal.heal()
                if phase == 0:
                    portal.fail_next(100_000, status=503, code="QUERY_LIMIT_EXCEEDED")
                elif phase == 1:
                    portal.time_out_next(100_000, seconds=1.0)
                else:
                    await portal.refuse_connections()
            since = asterisk_ami.mark()
            call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, number)
            await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
            reached = time.monotonic()
            assert reached - daemon.timed_lookup.asked_at[number] < deadline_ms / 1000 + 0.100
            await asterisk_ami.hangup_call(call.linkedid)
            linkedids.append(call.linkedid)
        await asyncio.sleep(max(0.0, outage_began + OUTAGE_SECONDS - time.monotonic()))  # the portal stays down
        await portal.accept_connections()
        for linkedid in linkedids:
            await eventually(finished(portal, linkedid), timeout=90)
    for linkedid in linkedids:
        assert len(calls_of(portal, linkedid)) == 1
        assert len(portal.records_with_origin("lead", f"{linkedid}/records")) == 1
    assert len(portal.records["lead"]) == len(numbers)
