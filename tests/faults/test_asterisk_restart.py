"""Fault: Asterisk killed (kill -9) and restarted mid-call, against the real Asterisk 22
(issue 12, item 13). The AMI connection cut, the daemon's other link fault, is proven in
tests/test_app_tracking.py (test_ami_link_cut_mid_call_reconnects_resyncs_and_a_later_transfer_still_reassigns).

What must hold: the lead of the call in progress is kept; the daemon reconnects to the new
Asterisk on its own; the next call is routed (the known client to its responsible), tracked
over AMI (a blind transfer moves the new lead) and logged once.
"""
from __future__ import annotations

import asyncio

import pytest

from tests.asterisk.ami_client import TestAmi, bridged_employee_channel, event_named
from tests.daemon_harness import UNKNOWN, logged_calls, running_daemon, write_config
from tests.fakes.polling import eventually

pytestmark = pytest.mark.asterisk

SECOND_CALLER = "+33611000099"


async def test_asterisk_killed_and_restarted_mid_call_the_daemon_reconnects_and_routes_and_tracks_the_next_call(
        tmp_path, crm, asterisk_factory):
    sandbox = asterisk_factory("killed-mid-call")
    config = write_config(tmp_path, ami=sandbox.daemon_ami)
    async with running_daemon(sandbox, config, crm) as daemon:
        async with TestAmi.connect(sandbox) as ami:
            await ami.originate_incoming("0184880000", UNKNOWN)
            [lead] = await eventually(lambda: crm.list_records("leads"))
            await bridged_employee_channel(ami, lead["created_by_call"], "101")
        connections_before = daemon.ami.reconnects

        await asyncio.to_thread(sandbox.kill_and_restart, daemon.parts.rules())
        assert await eventually(lambda: daemon.ami.connected and daemon.ami.reconnects > connections_before, timeout=15)

        async with TestAmi.connect(sandbox) as ami:
            call = await ami.originate_incoming("0184880000", SECOND_CALLER)
            await asyncio.wait_for(call.response, 10)  # routed: alice (101, queue head) answered
            leads = await eventually(lambda: _leads_of(crm, SECOND_CALLER))
            alice = await bridged_employee_channel(ami, call.linkedid, "101")
            since = ami.mark()
            await ami.action({"Action": "BlindTransfer", "Channel": alice, "Exten": "102", "Context": "employees"})
            await ami.wait_event(event_named("BlindTransfer", transfererchannel=alice, result="Success"), 5, since=since)
            moved = await eventually(lambda: _responsible_of(crm, SECOND_CALLER, "bob"))
            await ami.hangup_call(call.linkedid)
            logged = await eventually(lambda: _logged_with_transfer(crm, call.linkedid))

    assert [lead["responsible"] for lead in leads] == ["alice"]
    assert moved
    assert len(await logged_calls(crm, call.linkedid)) == 1
    assert logged[0]["transfers"] == [{"from": "alice", "to": "bob", "kind": "blind"}]
    assert [r["phones"] for r in await crm.list_records("leads")] == [[UNKNOWN], [SECOND_CALLER]]


async def _leads_of(crm, phone):
    return [r for r in await crm.list_records("leads") if phone in r["phones"]]


async def _responsible_of(crm, phone, employee):
    return [r["responsible"] for r in await _leads_of(crm, phone)] == [employee]


async def _logged_with_transfer(crm, linkedid):
    return [c for c in await logged_calls(crm, linkedid) if c["transfers"]]
