"""ARI JSON -> the tracker's events: tables of cases built like the recorded events
(tests/fixtures/ari/*.json shows the real ones)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agi_daemon.asterisk.ari import AriEvent, AriResync, translate
from agi_daemon.core.model import Direction, TransferKind
from agi_daemon.core.tracker import (
    BridgeEntered, BridgeLeft, ChannelCreated, ChannelHungUp, DialEnded, DialStarted, Resynced, Transferred,
)

AT = "2026-12-02T02:28:34.079+0000"
WHEN = datetime(2026, 12, 2, 2, 28, 34, 79000, tzinfo=timezone.utc)


def channel(cid="c1", name="Local/101@employees-00000001;1", linkedid="L1", context="employees",
            exten="101", caller="", **extra):
    data = {"id": cid, "name": name, "state": "Up", "caller": {"name": "", "number": caller},
            "dialplan": {"context": context, "exten": exten, "priority": 1},
            "creationtime": AT, **extra}
    if linkedid is not None:
        data["channelvars"] = {"CHANNEL(linkedid)": linkedid}
    return data


def event(kind, **body):
    return AriEvent(kind, {"type": kind, "timestamp": AT, **body}, 0.0)


def test_channel_carries_its_linkedid_context_caller_and_entry_direction():
    found = translate(event("ChannelCreated", channel=channel(context="agi-daemon-incoming", exten="0184880000",
                                                              caller="+33611223344")))
    assert isinstance(found, ChannelCreated) and found.at == WHEN
    c = found.channel
    assert (c.uniqueid, c.linkedid, c.context, c.exten, c.caller_id) == (
        "c1", "L1", "agi-daemon-incoming", "0184880000", "+33611223344")
    assert c.entry is Direction.INCOMING


@pytest.mark.parametrize("context, entry", [
    ("agi-daemon-dial-incoming", Direction.INCOMING), ("agi-daemon-fallback-outgoing", Direction.OUTGOING),
    ("agi-daemon-dial-outgoing", Direction.OUTGOING), ("employees", None), ("agi-daemon-stasis-hangup", None),
])
def test_entry_comes_from_the_shared_context_table(context, entry):
    assert translate(event("ChannelStateChange", channel=channel(context=context))).channel.entry is entry


def test_channel_without_channelvars_is_its_own_call():
    assert translate(event("ChannelCreated", channel=channel(linkedid=None))).channel.linkedid == "c1"


@pytest.mark.parametrize("status, kind", [
    ("", DialStarted), ("ANSWER", DialEnded), ("NOANSWER", DialEnded), ("BUSY", DialEnded),
    ("CANCEL", DialEnded), ("CHANUNAVAIL", DialEnded), ("RINGING", None), ("PROGRESS", None), ("PROCEEDING", None),
])
def test_dial_begins_with_an_empty_status_ends_with_a_final_one_and_skips_the_rest(status, kind):
    found = translate(event("Dial", dialstatus=status, dialstring="101@employees",
                            caller=channel("c0", "Local/x@agi-daemon-incoming-1;2"), peer=channel()))
    assert (type(found) if found else None) is kind
    if isinstance(found, DialStarted):
        assert found.dial_string == "101@employees" and found.caller.uniqueid == "c0"


def test_dial_without_caller_is_not_a_leg_and_without_peer_is_nothing():
    assert translate(event("Dial", dialstatus="", dialstring="x", peer=channel())).caller is None
    assert translate(event("Dial", dialstatus="", dialstring="x")) is None


def test_bridge_entered_and_left_name_the_bridge():
    entered = translate(event("ChannelEnteredBridge", channel=channel(), bridge={"id": "B1", "channels": ["c1"]}))
    left = translate(event("ChannelLeftBridge", channel=channel(), bridge={"id": "B1", "channels": []}))
    assert isinstance(entered, BridgeEntered) and entered.bridge_id == "B1"
    assert isinstance(left, BridgeLeft) and left.bridge_id == "B1"


def test_blind_transfer_names_the_transferer_the_transferee_and_the_extension():
    found = translate(event("BridgeBlindTransfer", result="Success", exten="102", context="employees",
                            channel=channel(), transferee=channel("c0", "Local/x@agi-daemon-incoming-1;2")))
    assert isinstance(found, Transferred)
    assert (found.kind, found.transferer.uniqueid, found.transferee.uniqueid, found.target_extension) == (
        TransferKind.BLIND, "c1", "c0", "102")


def test_attended_transfer_names_the_target_or_the_bridge_it_went_to():
    named = translate(event("BridgeAttendedTransfer", result="Success", transferer_first_leg=channel(),
                            transferee=channel("c0"), transfer_target=channel("c9", "Local/102@employees-2;1", exten="102"),
                            destination_bridge="B2"))
    unnamed = translate(event("BridgeAttendedTransfer", result="Success", transferer_first_leg=channel(),
                              transferee=channel("c0"), destination_bridge="B2"))
    assert (named.kind, named.target.uniqueid, named.target_extension, named.bridge_id) == (
        TransferKind.ATTENDED, "c9", "102", "B2")
    assert (unnamed.target, unnamed.bridge_id) == (None, "B2")


@pytest.mark.parametrize("kind", ["BridgeBlindTransfer", "BridgeAttendedTransfer"])
@pytest.mark.parametrize("result", ["Fail", "Invalid", "Not Permitted", ""])
def test_failed_transfer_reaches_nobody(kind, result):
    assert translate(event(kind, result=result, channel=channel(), transferer_first_leg=channel())) is None


def test_destroyed_channel_is_hung_up_with_its_cause():
    found = translate(event("ChannelDestroyed", cause=16, cause_txt="Normal Clearing", channel=channel()))
    assert isinstance(found, ChannelHungUp) and found.cause == "16"


def test_unread_event_types_give_nothing():
    assert translate(event("ChannelVarset", channel=channel(), variable="X", value="1")) is None


def test_snapshot_gives_each_channel_its_bridge_and_age():
    received = WHEN.timestamp() + 12.5
    snapshot = AriResync((channel("c1"), channel("c2"), {"name": "no id"}),
                         ({"id": "B1", "channels": ["c2"]},), received)
    found = translate(snapshot)
    assert isinstance(found, Resynced)
    assert [(live.channel.uniqueid, live.bridge_id, live.age_seconds) for live in found.channels] == [
        ("c1", "", pytest.approx(12.5)), ("c2", "B1", pytest.approx(12.5))]


async def test_event_the_translation_cannot_read_is_skipped_and_tracking_goes_on(caplog):
    """A malformed message (a caller object where a string was expected, a wrong type) costs
    that one event: the events after it still reach the tracker, and the log names the
    event's kind, not what it carried."""
    from agi_daemon.asterisk.ari.translate import tracker_events

    async def stream():
        yield event("ChannelCreated", channel={"id": "1", "caller": "+33611223344", "dialplan": 7})
        yield event("ChannelCreated", channel=channel())

    with caplog.at_level("WARNING"):
        found = [e async for e in tracker_events(stream())]
    assert [type(e) for e in found] == [ChannelCreated] and found[0].channel.uniqueid == "c1"
    assert "ARI: a ChannelCreated event could not be read" in caplog.text
    assert "+33611223344" not in caplog.text
