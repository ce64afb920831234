"""The Stasis application (routes/stasis.py) with a hand-written ARI peer: what it sets on the
channel and when it sends the channel on, whatever the CRM does."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agi_daemon.asterisk import variables as v
from agi_daemon.asterisk.ari import AriEvent, AriRefused, AriResync, AriUnavailable
from agi_daemon.asterisk.routes.stasis import StasisRouting
from tests.fakes.crm import MemoryCrm, SlowCrm
from tests.fakes.polling import eventually
from tests.fakes.rules import BLOCKED, CLIENT, PARIS
from tests.services.test_routing import services


class FakeAri:
    """Records every REST request; `failing` makes them raise."""

    def __init__(self, failing: Exception | None = None) -> None:
        self.requests: list[tuple[str, str, dict | None]] = []
        self.continued_at: dict[str, float] = {}
        self.failing = failing

    async def request(self, method, path, *, params=None, body=None):
        if self.failing is not None:
            raise self.failing
        self.requests.append((method, path, params))
        if path.endswith("/continue"):
            self.continued_at[path.split("/")[2]] = time.monotonic()
        return None

    def variables(self, channel_id):
        return [(p["variable"], p["value"]) for _, path, p in self.requests
                if path == f"/channels/{channel_id}/variable"]


def stasis_start(channel_id, direction, exten, caller, linkedid="L1"):
    channel = {"id": channel_id, "name": f"Local/{exten}@agi-daemon-{direction}-1;2",
               "caller": {"number": caller}, "dialplan": {"context": f"agi-daemon-{direction}", "exten": exten},
               "channelvars": {"CHANNEL(linkedid)": linkedid}}
    return AriEvent("StasisStart", {"type": "StasisStart", "args": [direction, linkedid], "channel": channel}, 0.0)


@pytest.fixture
async def tasks():
    async with asyncio.TaskGroup() as group:
        yield group


def router(crm, tasks, ari, deadline=0.3):
    routing, call_log, pending, _ = services(crm, tasks, deadline=deadline)
    stasis = StasisRouting(ari, "agi-daemon", routing, call_log, pending, deadline=deadline + 0.1)
    return stasis, pending


async def test_incoming_call_gets_the_same_variables_as_over_fastagi_status_last_then_continues(tasks):
    ari = FakeAri()
    stasis, pending = router(MemoryCrm(), tasks, ari)
    stasis.handle(stasis_start("ch1", "incoming", "0184880000", CLIENT))
    await eventually(lambda: "ch1" in ari.continued_at)
    names = [name for name, _ in ari.variables("ch1")]
    assert names[-1] == v.STATUS and dict(ari.variables("ch1"))[v.STATUS] == "ok"
    assert dict(ari.variables("ch1"))[v.QUEUE] == "Local/101@employees&Local/102@employees"
    assert ari.requests[-1][:2] == ("POST", "/channels/ch1/continue")
    await pending.drain(5)


async def test_excluded_caller_is_answered_excluded(tasks):
    ari = FakeAri()
    stasis, pending = router(MemoryCrm(), tasks, ari)
    stasis.handle(stasis_start("ch1", "incoming", PARIS, BLOCKED))
    await eventually(lambda: "ch1" in ari.continued_at)
    assert dict(ari.variables("ch1"))[v.STATUS] == "excluded"
    await pending.drain(5)


async def test_slow_crm_the_channel_leaves_stasis_within_the_deadline(tasks, crm):
    ari = FakeAri()
    stasis, pending = router(SlowCrm(crm, delay=2.0), tasks, ari, deadline=0.3)
    started = time.monotonic()
    stasis.handle(stasis_start("ch1", "incoming", PARIS, CLIENT))
    await eventually(lambda: "ch1" in ari.continued_at, interval=0.01)
    assert ari.continued_at["ch1"] - started < 0.3 + 0.1
    assert dict(ari.variables("ch1"))[v.STATUS] == "fallback"  # the queue group, decided without the CRM
    await pending.drain(5)


async def test_unknown_line_and_missing_direction_send_the_channel_to_the_fallback(tasks):
    ari = FakeAri()
    stasis, pending = router(MemoryCrm(), tasks, ari)
    stasis.handle(stasis_start("ch1", "incoming", "0999999999", CLIENT))
    bad = stasis_start("ch2", "incoming", PARIS, CLIENT)
    stasis.handle(AriEvent("StasisStart", {**bad.body, "args": []}, 0.0))
    await eventually(lambda: {"ch1", "ch2"} <= set(ari.continued_at))
    assert ari.variables("ch1")[-1] == (v.STATUS, "error") and ari.variables("ch2") == [(v.STATUS, "error")]
    await pending.drain(5)


@pytest.mark.parametrize("failure", [AriRefused(404, "channel gone"), AriUnavailable("no answer")])
async def test_failed_answer_is_logged_and_never_raises(tasks, caplog, failure):
    caplog.set_level(logging.INFO, logger="agi_daemon.asterisk.routes.stasis")
    stasis, pending = router(MemoryCrm(), tasks, FakeAri(failing=failure))
    stasis.handle(stasis_start("ch1", "incoming", PARIS, CLIENT))
    logged = await eventually(lambda: stasis.deciding == 0 and "channel ch1" in caplog.text)
    assert await pending.drain(5) == 0  # nothing left hanging, nothing raised into the TaskGroup
    assert logged


async def test_channels_found_waiting_in_the_application_at_a_resync_go_on_to_the_fallback(tasks):
    ari = FakeAri()
    stasis, pending = router(MemoryCrm(), tasks, ari)
    waiting = {"id": "ch7", "dialplan": {"app_name": "Stasis", "app_data": "agi-daemon,incoming,L7"}}
    elsewhere = {"id": "ch8", "dialplan": {"app_name": "Stasis", "app_data": "other-app,incoming,L8"}}
    dialling = {"id": "ch9", "dialplan": {"app_name": "Dial", "app_data": "Local/101@employees"}}
    stasis.handle(AriResync((waiting, elsewhere, dialling), (), 0.0))
    await eventually(lambda: "ch7" in ari.continued_at)
    await pending.drain(5)
    assert set(ari.continued_at) == {"ch7"} and ari.variables("ch7") == [(v.STATUS, "error")]


async def test_a_channel_found_waiting_whose_start_is_read_right_after_the_resync_is_routed_not_sent_to_the_fallback(
        tasks):
    """The snapshot is taken while the StasisStart of a channel that entered meanwhile waits,
    unread, behind it: that channel is routed like any call, once."""
    ari = FakeAri()
    stasis, pending = router(MemoryCrm(), tasks, ari)
    entered = {"id": "ch1", "dialplan": {"app_name": "Stasis", "app_data": "agi-daemon,incoming,L1"}}
    stasis.handle(AriResync((entered,), (), 0.0))
    stasis.handle(stasis_start("ch1", "incoming", PARIS, CLIENT))
    await eventually(lambda: "ch1" in ari.continued_at)
    await pending.drain(5)
    statuses = [value for name, value in ari.variables("ch1") if name == v.STATUS]
    assert statuses == ["ok"] and stasis.routed == 1
    assert [path for _, path, _ in ari.requests].count("/channels/ch1/continue") == 1


async def test_a_channel_whose_routing_answer_failed_goes_on_to_the_fallback_at_the_next_resync(tasks):
    """The link died between the StasisStart and the answer: after the reconnection the channel
    still waits in the application, and the resync sends it on."""
    ari = FakeAri(failing=AriUnavailable("events WebSocket closed"))
    stasis, pending = router(MemoryCrm(), tasks, ari)
    stasis.handle(stasis_start("ch1", "incoming", PARIS, CLIENT))
    await eventually(lambda: stasis.deciding == 0)
    ari.failing = None
    still = {"id": "ch1", "dialplan": {"app_name": "Stasis", "app_data": "agi-daemon,incoming,L1"}}
    stasis.handle(AriResync((still,), (), 0.0))
    await eventually(lambda: "ch1" in ari.continued_at, timeout=5)
    await pending.drain(5)
    assert ari.variables("ch1") == [(v.STATUS, "error")]


async def test_at_close_decisions_in_progress_are_delivered_and_channels_left_waiting_go_on(tasks, crm):
    ari = FakeAri()
    stasis, pending = router(SlowCrm(crm, delay=2.0), tasks, ari, deadline=0.3)
    stasis.handle(stasis_start("ch1", "incoming", PARIS, CLIENT))
    waiting = {"id": "ch7", "dialplan": {"app_name": "Stasis", "app_data": "agi-daemon,incoming,L7"}}

    async def listed(method, path, *, params=None, body=None):
        return [waiting] if path == "/channels" else await FakeAri.request(ari, method, path, params=params, body=body)

    ari.request = listed
    await stasis.at_close()
    assert set(ari.continued_at) == {"ch1", "ch7"}
    assert dict(ari.variables("ch1"))[v.STATUS] == "fallback" and ari.variables("ch7") == [(v.STATUS, "error")]
    await pending.drain(5)
