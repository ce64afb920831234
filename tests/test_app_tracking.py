"""Issue 3's acceptance, end to end: calls followed by the whole daemon over AMI and over ARI
(each scenario once per `mode`), against the real Asterisk 22 (transfers, missed and answered
calls, a cut link, Asterisk restarted), and a fake AMI peer (an event flood).

Each scenario also runs once per CRM (`adapters`): the embedded CRM (SQLite, PostgreSQL) and
`crm.adapter: bitrix24` against the in-test portal; `crm` is what that CRM holds
(tests/crm/crm_holds.py). A Bitrix24 call is finished for one user with its duration and
status: its rings and transfers are checked where the CRM keeps them (`call_fields`)."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.asterisk.ami.fake_ami import FakeAmi
from tests.asterisk.ami_client import blind_transfer, TestAmi, bridged_employee_channel, event_named, user_event
from tests.daemon_harness import (  # noqa: F401  (scenario_crm: the `crm` fixture)
    CALL_LOG, CLIENT, MODE_IDS, MODES, UNKNOWN, Mode, call_log_said, logged_calls, rang, running_daemon, scenario_crm,
    write_config,
)
from tests.asterisk.sandbox import closed_port
from tests.fakes.crm import SlowCrm
from tests.fakes.fastagi import agi_call
from tests.fakes.polling import eventually
from tests.tcp_proxy import TcpProxy

PARIS_AS_DIALLED = "0184880000"


async def transfer(ami, call, kind: str) -> None:
    """alice (101), who answered, transfers the call to bob (102) the way an agent would."""
    if kind == "blind":
        await blind_transfer(ami, call.linkedid, "101", "102")
    else:
        alice = await bridged_employee_channel(ami, call.linkedid, "101")
        since = ami.mark()
        await ami.action({"Action": "Atxfer", "Channel": alice, "Exten": "102#", "Context": "employees"})
        await ami.wait_event(rang(call.linkedid, "102"), 5, since=since)
        await asyncio.sleep(0.3)  # bob answers the consultation call
        await ami.hangup(alice)  # alice hangs up: the transfer completes
        await ami.wait_event(event_named("AttendedTransfer", result="Success"), 5, since=since)


async def answered_call(ami, caller: str):
    call = await ami.originate_incoming(PARIS_AS_DIALLED, caller)
    await asyncio.wait_for(call.response, 5)  # alice (101, queue head) answered
    return call


pytestmark = [pytest.mark.asterisk, pytest.mark.databases("sqlite", "postgresql"),
              pytest.mark.adapters("embedded", "bitrix24")]
# a slow CRM is the embedded store made slow (SlowCrm): with bitrix24 a portal that does not
# answer is tests/test_app_bitrix24.py's portal-down scenario
EMBEDDED_ONLY = pytest.mark.adapters("embedded")


@pytest.mark.parametrize("kind", ["blind", "attended"])
async def test_transfer_of_new_client_call_gives_the_lead_to_the_target(tmp_path, mode, crm, asterisk_ami, employees, kind):
    async with running_daemon(employees, mode.config(tmp_path), crm):
        call = await answered_call(asterisk_ami, UNKNOWN)
        [lead] = await eventually(lambda: crm.list_records("leads"))
        assert lead["responsible"] == "alice"
        await transfer(asterisk_ami, call, kind)
        moved = await eventually(lambda: _responsible_is(crm, "leads", "bob"))
        await asterisk_ami.hangup_call(call.linkedid)
        [entry] = await eventually(lambda: _with_transfers(crm, call.linkedid))
    assert moved
    assert entry["entity"] == f"lead:{lead['id']}"
    if "transfers" in crm.call_fields:  # Bitrix24 keeps no transfers, and finishes the call for one user
        assert entry["transfers"] == [{"from": "alice", "to": "bob", "kind": kind}] and entry["answered_by"] == "alice"


@pytest.mark.parametrize("kind", ["blind", "attended"])
async def test_transfer_of_known_client_call_keeps_the_responsible(tmp_path, mode, crm, asterisk_ami, employees, kind):
    contact = await crm.add_record("contact", "Client SA", CLIENT, "alice")  # alice is rung first (R6)
    async with running_daemon(employees, mode.config(tmp_path), crm):
        call = await answered_call(asterisk_ami, CLIENT)
        await transfer(asterisk_ami, call, kind)
        await asterisk_ami.hangup_call(call.linkedid)
        [entry] = await eventually(lambda: _with_transfers(crm, call.linkedid))
    [after] = await crm.list_records("contacts")
    assert after["responsible"] == "alice" and await crm.list_records("leads") == []
    assert entry["entity"] == f"contact:{contact['id']}"
    if "transfers" in crm.call_fields:
        assert entry["transfers"] == [{"from": "alice", "to": "bob", "kind": kind}]


@EMBEDDED_ONLY
@pytest.mark.databases("sqlite")
async def test_blind_transfer_to_an_external_number_is_not_a_second_call(tmp_path, mode, crm, asterisk_ami, employees):
    """alice sends a new caller on to an outside number with her phone's transfer: the digits
    go through the phones' context, which sends external numbers to agi-daemon-outgoing. The
    caller reaches the trunk; tracking's record is the incoming call, answered by alice, with
    the transfer to the outside number, on the caller's lead (which of the hangup reports
    survives is the tracking-down test's part, below)."""
    outside = "0472999999"
    async with running_daemon(employees, mode.config(tmp_path, create_for="all"), crm):
        call = await answered_call(asterisk_ami, UNKNOWN)
        [lead] = await eventually(lambda: crm.list_records("leads"))
        since = asterisk_ami.mark()
        await blind_transfer(asterisk_ami, call.linkedid, "101", outside, context="from-phones")
        await asterisk_ami.wait_event(user_event("AgiDaemonTestTrunk", number="+33472999999"), 5, since=since)
        await asterisk_ami.hangup_call(call.linkedid)
        [entry] = await eventually(lambda: _with_transfers(crm, call.linkedid))  # tracking's record
    assert [r["id"] for r in await crm.list_records("leads")] == [lead["id"]]
    assert await crm.list_records("contacts") == []
    assert (entry["direction"], entry["number"], entry["entity"], entry["answered_by"]) == \
        ("incoming", UNKNOWN, f"lead:{lead['id']}", "alice")
    assert entry["transfers"] == [{"from": "alice", "to": None, "kind": "blind"}]


@EMBEDDED_ONLY
@pytest.mark.databases("sqlite")
async def test_blind_transfer_to_an_external_number_with_tracking_down_logs_the_incoming_call(
        tmp_path, crm, asterisk_ami, employees):
    """Tracking down (AMI unreachable): the hangup report is all the daemon hears. The caller
    sent on to an outside number is still the incoming call from the caller, not an outgoing
    call "from" the caller to the outside number."""
    mode = Mode("ami", employees)
    async with running_daemon(employees, mode.config(tmp_path, link_port=closed_port()), crm, wait_for_ami=False):
        call = await answered_call(asterisk_ami, UNKNOWN)
        await eventually(lambda: crm.list_records("leads"))
        since = asterisk_ami.mark()
        await blind_transfer(asterisk_ami, call.linkedid, "101", "0472999999", context="from-phones")
        await asterisk_ami.wait_event(user_event("AgiDaemonTestTrunk", number="+33472999999"), 5, since=since)
        await asterisk_ami.hangup_call(call.linkedid)
        [entry] = await eventually(lambda: logged_calls(crm, call.linkedid))
    assert (entry["direction"], entry["number"]) == ("incoming", UNKNOWN)


async def test_transfer_on_line_without_reassign_keeps_the_responsible(tmp_path, mode, crm, asterisk_ami, employees):
    """Tracking followed the transfer (the call is logged with it, after any change of
    responsible of the call: same lane), and the lead still has its first responsible."""
    async with running_daemon(employees, mode.config(tmp_path, reassign=False), crm):
        call = await answered_call(asterisk_ami, UNKNOWN)
        [lead] = await eventually(lambda: crm.list_records("leads"))
        assert lead["responsible"] == "alice"
        await transfer(asterisk_ami, call, "blind")
        await asterisk_ami.hangup_call(call.linkedid)
        [entry] = await eventually(lambda: _with_transfers(crm, call.linkedid))
    assert entry["entity"] == f"lead:{lead['id']}"
    if "transfers" in crm.call_fields:
        assert entry["transfers"] == [{"from": "alice", "to": "bob", "kind": "blind"}]
    [after] = await crm.list_records("leads")
    assert (after["id"], after["responsible"]) == (lead["id"], "alice")


async def test_call_nobody_answers_is_logged_missed_with_ring_seconds_and_queue_head_responsible(tmp_path, mode, crm, asterisk_ami, employees):
    employees.set_global("EMPLOYEE_101", "noanswer")
    employees.set_global("EMPLOYEE_102", "noanswer")
    async with running_daemon(employees, mode.config(tmp_path, ring=2), crm):
        since = asterisk_ami.mark()
        started = time.monotonic()
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "102"), 5, since=since)
        await asyncio.sleep(2.5)  # bob rings out too: the dialplan hangs up
        [entry] = await eventually(lambda: logged_calls(crm, call.linkedid))
        rang_for = time.monotonic() - started
    [lead] = await crm.list_records("leads")
    assert (entry["disposition"], entry["answered_by"], entry["talk_seconds"]) == ("missed", None, 0.0)
    if "ring_seconds" in crm.call_fields:  # Bitrix24 keeps the talk time only
        assert 3.5 <= entry["ring_seconds"] <= rang_for + 0.5
        assert entry["employees"] == ["alice", "bob"]
    assert lead["responsible"] == "alice"


async def test_answered_call_talk_seconds_match_the_real_duration(tmp_path, mode, crm, asterisk_ami, employees):
    async with running_daemon(employees, mode.config(tmp_path), crm):
        call = await answered_call(asterisk_ami, UNKNOWN)
        answered = time.monotonic()
        await asyncio.sleep(2.0)
        await asterisk_ami.hangup_call(call.linkedid)
        hung_up = time.monotonic()
        [entry] = await eventually(lambda: logged_calls(crm, call.linkedid))
    assert entry["disposition"] == "answered"
    assert abs(entry["talk_seconds"] - (hung_up - answered)) <= 1.0


@EMBEDDED_ONLY
@pytest.mark.databases("sqlite")
async def test_an_employee_whose_endpoint_dials_a_desk_phone_is_the_one_who_answered(tmp_path, mode, crm,
                                                                                   asterisk_ami, employees):
    """endpoint_template Local/{extension}@employees, and the admin's employees context dials
    the desk phone: the phone answers the inner Dial first, on a channel that is no employee's
    endpoint. The call is still answered by alice, as the hangup report says."""
    employees.set_global("EMPLOYEE_101", "deskphone")
    async with running_daemon(employees, mode.config(tmp_path), crm):
        call = await answered_call(asterisk_ami, UNKNOWN)
        await asyncio.sleep(1.0)
        await asterisk_ami.hangup_call(call.linkedid)
        # tracking's record (only alice rang) replaces the hangup report's (the whole queue group)
        entries = await eventually(lambda: _logged_as(crm, call.linkedid, ["alice"]))
    [entry] = entries
    assert (entry["disposition"], entry["answered_by"], entry["employees"]) == ("answered", "alice", ["alice"])


async def _logged_as(crm, linkedid: str, employees: list[str]):
    found = await logged_calls(crm, linkedid)
    return found if found and found[0]["employees"] == employees else None


async def test_link_cut_mid_call_reconnects_resyncs_and_a_later_transfer_still_reassigns(tmp_path, mode, crm, asterisk_ami, employees, caplog):
    """The daemon's link to Asterisk (AMI, or ARI's events WebSocket) dies mid-call, through a
    proxy that drops it, and comes back."""
    caplog.set_level(logging.INFO, logger=CALL_LOG)
    async with TcpProxy(mode.link_port) as proxy:
        async with running_daemon(employees, mode.config(tmp_path, link_port=proxy.port), crm) as daemon:
            call = await answered_call(asterisk_ami, UNKNOWN)
            await eventually(lambda: crm.list_records("leads"))
            proxy.cut()
            await eventually(lambda: _reconnected(daemon), timeout=10)
            await transfer(asterisk_ami, call, "blind")
            moved = await eventually(lambda: _responsible_is(crm, "leads", "bob"))
            await asterisk_ami.hangup_call(call.linkedid)
            [entry] = await eventually(lambda: _with_transfers(crm, call.linkedid))
            # both reports of the call's end (tracking's and the hangup handler's) written
            both = await eventually(call_log_said(caplog, call.linkedid, ": logged ", times=2))
            assert daemon.event_source.dropped == 0
        assert proxy.connections >= 2
    assert moved and both
    assert len(await logged_calls(crm, call.linkedid)) == 1
    if "transfers" in crm.call_fields:
        assert entry["transfers"] == [{"from": "alice", "to": "bob", "kind": "blind"}]


@EMBEDDED_ONLY
async def test_ari_link_cut_while_a_call_waits_in_stasis_the_call_still_leaves_within_the_deadline(tmp_path, crm, asterisk_ami, employees):
    """The events WebSocket dies while the daemon decides (a slow CRM): the answer goes by REST
    on a new connection, and the call rings the queue group within the deadline."""
    mode = Mode("ari", employees)
    slow = SlowCrm(crm.store, delay=1.5)
    async with TcpProxy(mode.link_port) as proxy:
        config = mode.config(tmp_path, link_port=proxy.port, deadline_ms=300)
        async with running_daemon(employees, config, slow) as daemon:
            since = asterisk_ami.mark()
            call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, UNKNOWN)
            await eventually(lambda: _deciding(daemon), timeout=5, interval=0.005)
            in_stasis = time.monotonic()  # the daemon has the call (StasisStart) and asks the CRM
            proxy.cut()
            await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
            waited = time.monotonic() - in_stasis
            await eventually(lambda: _reconnected(daemon), timeout=10)
    assert waited < 0.300 + 0.200  # the deadline, then the answer by REST and the employee ringing


@pytest.mark.parametrize("transport", MODES, ids=MODE_IDS)
async def test_asterisk_restarted_while_the_daemon_runs_the_daemon_reconnects_and_routes_and_tracks_the_next_call(tmp_path, crm, crm_config, asterisk_factory, transport):
    sandbox = asterisk_factory(f"restart-{transport}")
    async with running_daemon(sandbox, Mode(transport, sandbox, crm_config).config(tmp_path), crm) as daemon:
        sandbox.restart()
        await eventually(lambda: _reconnected(daemon), timeout=30)
        async with TestAmi.connect(sandbox) as ami:
            call = await answered_call(ami, UNKNOWN)
            [caller_side] = [c for c in await ami.channels(call.linkedid) if "@agi-daemon-incoming" in c and c.endswith(";2")]
            status = await ami.getvar("AGI_DAEMON_STATUS", caller_side)
            await asyncio.sleep(0.5)
            await ami.hangup_call(call.linkedid)
            [entry] = await eventually(lambda: logged_calls(crm, call.linkedid))
    assert status == "ok"  # the daemon decided: not the fallback
    [lead] = await crm.list_records("leads")
    assert (entry["disposition"], entry["answered_by"], entry["entity"]) == ("answered", "alice", f"lead:{lead['id']}")


async def test_outgoing_call_to_a_new_number_that_bypassed_the_outgoing_route_creates_what_the_line_says(
        tmp_path, mode, crm, asterisk_ami, employees):
    """bob dials a new number from a dialplan of his own (not agi-daemon-outgoing): the daemon
    was never asked, but the call is one of the line's outgoing calls all the same (R4): with
    create_for all it gets its lead, bob's (R9), and is logged on it."""
    linkedid, entry = await _bob_dials_a_new_number_directly(tmp_path, mode, crm, asterisk_ami, employees, "all")
    [lead] = await crm.list_records("leads")
    assert (lead["responsible"], lead["phones"], lead["created_by_call"]) == ("bob", ["+33699000001"], linkedid)
    assert entry["entity"] == f"lead:{lead['id']}"


@EMBEDDED_ONLY
@pytest.mark.databases("sqlite")
async def test_outgoing_call_that_bypassed_the_outgoing_route_on_an_incoming_only_line_creates_nothing(
        tmp_path, mode, crm, asterisk_ami, employees):
    _, entry = await _bob_dials_a_new_number_directly(tmp_path, mode, crm, asterisk_ami, employees, "incoming")
    assert await crm.list_records("leads") == [] and entry["entity"] is None


async def _bob_dials_a_new_number_directly(tmp_path, mode, crm, asterisk_ami, employees, create_for: str):
    """bob's call to a new number through [phones] (the trunk, no daemon): (linkedid, its log)."""
    number = "0699000001"
    async with running_daemon(employees, mode.config(tmp_path, create_for=create_for), crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate(f"Local/{number}@phones", '"bob" <102>')
        await asterisk_ami.wait_event(user_event("AgiDaemonTestTrunk", linkedid=call.linkedid, number=number), 5, since=since)
        await asterisk_ami.hangup_call(call.linkedid)
        # the call's records are submitted before its log, in the same lane: logged, they exist
        [entry] = await eventually(lambda: logged_calls(crm, call.linkedid))
    return call.linkedid, entry


@pytest.mark.parametrize("number, logged_on", [("0611223344", "contact"), ("0612000001", None)], ids=["known-contact", "employee-mobile"])
async def test_outgoing_call_that_bypassed_the_outgoing_route_is_logged_with_the_same_exclusions(tmp_path, mode, crm, asterisk_ami, employees, number, logged_on, caplog):
    caplog.set_level(logging.INFO, logger=CALL_LOG)
    contact = await crm.add_record("contact", "Client SA", CLIENT, "alice")
    async with running_daemon(employees, mode.config(tmp_path), crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate(f"Local/{number}@phones", '"bob" <102>')
        await asterisk_ami.wait_event(user_event("AgiDaemonTestTrunk", linkedid=call.linkedid, number=number), 5, since=since)
        await asyncio.sleep(1.0)
        await asterisk_ami.hangup_call(call.linkedid)
        if logged_on is None:  # R8: alice's mobile; tracking saw the call end and dropped it
            assert await eventually(call_log_said(caplog, call.linkedid, "not logged"))
            assert await logged_calls(crm, call.linkedid) == [] and await crm.list_records("leads") == []
            return
        entries = await eventually(lambda: logged_calls(crm, call.linkedid))
    [entry] = entries
    assert (entry["direction"], entry["number"], entry["line"]) == ("outgoing", CLIENT, "+33184880000")
    assert (entry["entity"], entry["disposition"]) == (f"contact:{contact['id']}", "answered")
    assert 0.5 <= entry["talk_seconds"] <= 2.0
    if "employees" in crm.call_fields:
        assert entry["employees"] == ["bob"]


@EMBEDDED_ONLY  # a fake AMI peer, no call for the CRM to follow: the adapter plays no part
async def test_ami_event_flood_drops_nothing_and_routing_stays_within_the_deadline(tmp_path, crm):
    async with FakeAmi(username="agi-daemon", secret="flood-secret") as fake:
        config = write_config(tmp_path, ami=(fake.port, "agi-daemon", "flood-secret"), deadline_ms=300)
        async with running_daemon(None, config, crm) as daemon:
            flood = asyncio.create_task(fake.flood(6000, 2000, _unrelated_call_event))
            latencies, statuses = [], []
            while not flood.done():
                started = time.monotonic()
                answer = await agi_call(daemon.agi_port, "incoming", extension=PARIS_AS_DIALLED,
                                        callerid=f"+3361100{len(statuses):04d}", args=(f"flood-{len(statuses)}",))
                latencies.append(time.monotonic() - started)
                statuses.append(answer.get("AGI_DAEMON_STATUS"))
                await asyncio.sleep(0.05)
            await flood
            await eventually(lambda: _drained(daemon))
            assert daemon.ami.dropped == 0
            assert daemon.tracking.events_seen >= 6000  # every flooded event reached the tracker
    assert len(statuses) >= 20
    assert set(statuses) == {"ok"}  # not one call fell back to the queue group for lack of time
    assert max(latencies) < 0.300


def _unrelated_call_event(n: int) -> dict[str, str]:
    """Channel events of internal calls the tracker follows and discards."""
    name = ("Newchannel", "Hangup")[n % 2]
    uniqueid = f"1800000000.{n // 2}"
    return {"Event": name, "Channel": f"PJSIP/200-{n // 2:08x}", "Uniqueid": uniqueid, "Linkedid": uniqueid,
            "Context": "internal", "Exten": "201", "CallerIDNum": "200", "Cause": "16"}


async def _responsible_is(crm, kind, employee):
    records = await crm.list_records(kind)
    return bool(records) and all(r["responsible"] == employee for r in records)


async def _with_transfers(crm, linkedid):
    """The call's log entry once it shows the transfer (tracking's report); where the CRM keeps
    no transfers (Bitrix24), once the call is logged."""
    if "transfers" not in crm.call_fields:
        return await logged_calls(crm, linkedid)
    return [c for c in await logged_calls(crm, linkedid) if c["transfers"]]


def _reconnected(daemon):
    async def probe():
        return daemon.event_source.reconnects >= 1 and daemon.event_source.connected

    return probe()


def _deciding(daemon):
    async def probe():
        return daemon.stasis.deciding > 0

    return probe()


def _drained(daemon):
    async def probe():
        return daemon.ami.queue.qsize() == 0 and daemon.tracking.events_seen >= 6000

    return probe()
