"""The frozen values handed to the rest of the daemon."""
from __future__ import annotations

import dataclasses

import pytest

from agi_daemon.asterisk.ami import AmiEvent, AmiFields, ChannelSnapshot
from agi_daemon.asterisk.ami.model import parse_duration


def test_event_from_plain_dict_is_frozen_and_read_only() -> None:
    source = {"Event": "Hangup", "Channel": "PJSIP/101-1", "UniqueID": "1.2", "Linkedid": "1.1"}
    event = AmiEvent("Hangup", source, 12.5)
    source["Channel"] = "changed"
    assert isinstance(event.fields, AmiFields)
    assert (event.channel, event.uniqueid, event.linkedid) == ("PJSIP/101-1", "1.2", "1.1")
    assert event.get("missing") is None and event.get("missing", "") == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "Other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.fields["Channel"] = "x"  # type: ignore[index]
    assert event == AmiEvent("Hangup", dict(event.fields), 12.5)
    assert len({event, AmiEvent("Hangup", dict(event.fields), 12.5)}) == 1


def test_core_show_channel_fields_become_a_snapshot() -> None:
    snapshot = ChannelSnapshot.from_fields({
        "Event": "CoreShowChannel", "Channel": "PJSIP/101-00000001", "Uniqueid": "1.2",
        "Linkedid": "1.1", "Context": "agi-daemon-incoming", "Exten": "+33184880000",
        "ChannelState": "6", "ChannelStateDesc": "Up", "CallerIDNum": "101",
        "ConnectedLineNum": "+33612000001", "BridgeId": "b-1", "Application": "Dial",
        "Duration": "01:02:03",
    })
    assert snapshot == ChannelSnapshot(
        channel="PJSIP/101-00000001", uniqueid="1.2", linkedid="1.1",
        context="agi-daemon-incoming", exten="+33184880000", state="Up", caller_id_num="101",
        connected_line_num="+33612000001", bridge_id="b-1", application="Dial", duration=3723)


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:00:04", 4), ("01:00:00", 3600), ("42", 42), ("", 0), ("n/a", 0), ("1:-2", 0),
])
def test_duration_text_gives_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
