"""AMI events -> the tracker's core events, on events recorded from the real Asterisk 22."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agi_daemon.asterisk.ami import AmiEvent, AmiResync, ChannelSnapshot
from agi_daemon.asterisk.ami.translate import ENTRY_CONTEXTS, EVENT_NAMES, tracker_events, translate
from agi_daemon.asterisk.fallback import render_fallback
from agi_daemon.core.model import Direction, TransferKind
from agi_daemon.core.tracker import (
    BridgeEntered,
    BridgeLeft,
    Channel,
    ChannelCreated,
    ChannelHungUp,
    DialEnded,
    DialStarted,
    LiveChannel,
    Resynced,
    Transferred,
)
from tests.fakes.rules import make_rules
from tests.fixtures import ami_fixture_names, ami_items

PROJECT = Path(__file__).resolve().parents[3]
DIALPLAN = PROJECT / "dialplan" / "agi-daemon.conf"
DAEMON_AMI_USER = PROJECT / "config" / "asterisk" / "manager-agi-daemon.conf"
LINE = "+33184880000"
CLIENT = "+33611223344"


def when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def recorded(fixture: str, name: str, **match: str) -> AmiEvent:
    """The first recorded `name` event whose fields match (values compared exactly)."""
    return next(item for item in ami_items(fixture) if isinstance(item, AmiEvent) and item.name == name
                and all(item.get(key) == value for key, value in match.items()))


# ---------------------------------------------------------------- the recordings

@pytest.mark.parametrize("fixture", ami_fixture_names())
def test_every_recorded_event_the_tracker_reads_translates(fixture):
    for item in ami_items(fixture):
        if isinstance(item, AmiResync) or item.name in EVENT_NAMES:
            assert translate(item) is not None, item


def test_events_the_tracker_does_not_read_translate_to_nothing():
    for name in ("Newstate", "VarSet", "Newexten", "DeviceStateChange", "UserEvent", "LocalBridge", "Cdr"):
        assert translate(AmiEvent(name, {"Event": name, "Uniqueid": "1.1", "Linkedid": "1.1"}, 1.0)) is None


def test_every_event_name_read_has_a_translation():
    for name in EVENT_NAMES:
        fields = {"Event": name, "Result": "Success"}
        for prefix in ("", "Dest", "Transferer", "OrigTransferer"):
            fields.update({f"{prefix}Uniqueid": "1.2", f"{prefix}Linkedid": "1.1", f"{prefix}Channel": "PJSIP/1-1"})
        assert translate(AmiEvent(name, fields, 1.0)) is not None, name


def test_newchannel_becomes_channel_created_with_its_entry_context():
    event = recorded("incoming_answered", "Newchannel", Context="agi-daemon-incoming")
    created = translate(event)
    assert created == ChannelCreated(
        Channel(uniqueid=event.uniqueid, name=event.channel, linkedid=event.linkedid,
                context="agi-daemon-incoming", exten=LINE, caller_id="<unknown>",
                entry=Direction.INCOMING),
        when(event.received_at))


def test_employee_channel_has_no_entry_context():
    event = recorded("incoming_answered", "Newchannel", Context="employees")
    assert translate(event).channel.entry is None


def test_dial_by_the_line_context_names_caller_destination_and_dial_string():
    event = recorded("incoming_busy_then_answered", "DialBegin", DialString="101@employees")
    dial = translate(event)
    assert isinstance(dial, DialStarted)
    assert dial.caller.context == "agi-daemon-fallback-incoming" and dial.caller.entry is Direction.INCOMING
    assert dial.caller.caller_id == CLIENT
    assert dial.destination.name.startswith("Local/101@employees-") and dial.destination.name.endswith(";1")
    assert dial.dial_string == "101@employees"


def test_dial_end_carries_the_dial_status():
    event = recorded("incoming_busy_then_answered", "DialEnd", DialStatus="BUSY")
    ended = translate(event)
    assert isinstance(ended, DialEnded) and ended.status == "BUSY" and ended.caller is not None


def test_originate_dial_has_no_calling_channel():
    """Originate's own DialBegin names only the originated channel (Dest* headers)."""
    event = recorded("incoming_answered", "DialBegin", DialString=f"{LINE}@agi-daemon-incoming")
    dial = translate(event)
    assert dial.caller is None and dial.destination.linkedid == event.get("DestLinkedid")


def test_outgoing_entry_shows_the_employee_extension_as_caller_id():
    dial = translate(recorded("outgoing_answered", "DialBegin", DialString="+33699887766@trunk"))
    assert (dial.caller.entry, dial.caller.caller_id, dial.caller.exten) == (Direction.OUTGOING, "101", "+33699887766")


def test_bridge_enter_leave_and_hangup_translate():
    enter = translate(recorded("incoming_answered", "BridgeEnter"))
    leave = translate(recorded("incoming_answered", "BridgeLeave"))
    hangup = translate(recorded("incoming_answered", "Hangup"))
    assert isinstance(enter, BridgeEntered) and isinstance(leave, BridgeLeft) and enter.bridge_id == leave.bridge_id
    assert isinstance(hangup, ChannelHungUp) and hangup.cause.isdigit()


def test_blind_transfer_names_transferer_transferee_and_extension():
    event = recorded("incoming_blind_transfer", "BlindTransfer")
    transfer = translate(event)
    assert isinstance(transfer, Transferred) and transfer.kind is TransferKind.BLIND
    assert transfer.transferer.name == event.get("TransfererChannel")
    assert transfer.transferer.name.startswith("Local/101@employees-")
    assert transfer.transferee.name == event.get("TransfereeChannel")
    assert (transfer.target, transfer.target_extension) == (None, "102")


def test_attended_transfer_names_the_target_channel_and_the_destination_bridge():
    event = recorded("incoming_attended_transfer", "AttendedTransfer")
    transfer = translate(event)
    assert transfer.kind is TransferKind.ATTENDED
    assert transfer.transferer.name == event.get("OrigTransfererChannel")
    assert transfer.transferee.name == event.get("TransfereeChannel")
    assert transfer.target.name == event.get("TransferTargetChannel")
    assert transfer.target.name.startswith("Local/102@employees-")
    assert transfer.target_extension == "102"
    assert transfer.bridge_id == event.get("DestBridgeUniqueid") != ""


def test_attended_transfer_after_the_target_moved_has_only_the_destination_bridge():
    """The race recorded in incoming_attended_transfer_target_gone: no TransferTarget* headers."""
    event = recorded("incoming_attended_transfer_target_gone", "AttendedTransfer")
    assert event.get("TransferTargetChannel") is None and event.get("SecondBridgeNumChannels") == "0"
    transfer = translate(event)
    assert (transfer.target, transfer.target_extension) == (None, "")
    assert transfer.bridge_id == event.get("DestBridgeUniqueid") != ""


@pytest.mark.parametrize("fixture, name", [("incoming_blind_transfer", "BlindTransfer"),
                                           ("incoming_attended_transfer", "AttendedTransfer")])
@pytest.mark.parametrize("result", ["Fail", "Invalid", "Not Permitted", ""])
def test_transfer_that_did_not_succeed_translates_to_nothing(fixture, name, result):
    event = recorded(fixture, name)
    assert translate(AmiEvent(name, {**dict(event.fields), "Result": result}, event.received_at)) is None


def test_timestamp_header_is_preferred_to_the_reception_time():
    event = recorded("incoming_answered", "Hangup")
    stamped = AmiEvent("Hangup", {**dict(event.fields), "Timestamp": "1764000000.125000"}, event.received_at)
    garbled = AmiEvent("Hangup", {**dict(event.fields), "Timestamp": "soon"}, event.received_at)
    assert translate(stamped).at == when(1764000000.125)
    assert translate(garbled).at == when(event.received_at)


def test_event_without_uniqueid_translates_to_nothing():
    assert translate(AmiEvent("Hangup", {"Event": "Hangup", "Channel": "PJSIP/1-1"}, 1.0)) is None
    assert translate(AmiEvent("DialBegin", {"Event": "DialBegin", "Uniqueid": "1.1"}, 1.0)) is None


def test_recorded_resync_lists_live_channels_with_age_bridge_and_entry():
    [resync] = [item for item in ami_items("incoming_blind_transfer_after_resync") if isinstance(item, AmiResync)]
    event = translate(resync)
    assert isinstance(event, Resynced) and event.at == when(resync.received_at)
    assert len(event.channels) == len(resync.channels) == 4
    entry = [live for live in event.channels if live.channel.entry is Direction.INCOMING]
    assert [(live.channel.exten, live.channel.caller_id, live.state) for live in entry] == [(LINE, CLIENT, "Up")]
    assert entry[0].bridge_id


def test_snapshot_channel_becomes_a_live_channel():
    snapshot = ChannelSnapshot("PJSIP/trunk-00000001", "1.5", "1.4", "agi-daemon-outgoing", "0612345678", "Ring",
                               "101", "", "", "AGI", 75)
    [live] = translate(AmiResync((snapshot,), 100.0)).channels
    assert live == LiveChannel(Channel("1.5", "PJSIP/trunk-00000001", "1.4", "agi-daemon-outgoing", "0612345678",
                                       "101", Direction.OUTGOING), "Ring", "", 75.0)


async def test_stream_of_ami_items_becomes_the_stream_of_tracker_events():
    items = ami_items("incoming_blind_transfer_after_resync") + ami_items("incoming_answered")

    async def source():
        for item in items:
            yield item

    events = [event async for event in tracker_events(source())]
    assert events == [event for event in map(translate, items) if event is not None]
    assert isinstance(events[0], Resynced) and len(events) < len(items)  # Newstate is left out


# ---------------------------------------------------------------- the dialplan contract

def test_entry_contexts_are_the_contexts_of_the_dialplan_and_of_the_fallback():
    defined = {name for path in DIALPLAN.parent.glob("*.conf")
               for name in re.findall(r"^\[([^\]]+)\]", path.read_text(), re.M)}
    defined |= set(re.findall(r"^\[([^\]]+)\]", render_fallback(make_rules()), re.M))
    assert set(ENTRY_CONTEXTS) <= defined
    assert {d for d in ENTRY_CONTEXTS.values()} == {Direction.INCOMING, Direction.OUTGOING}


def test_the_daemon_ami_user_filter_lets_through_every_event_the_tracker_reads():
    allowed = set(re.findall(r"^eventfilter\(action\(include\),name\((\w+)\)\)", DAEMON_AMI_USER.read_text(), re.M))
    assert EVENT_NAMES <= allowed
