"""The seam between Asterisk and call tracking: whichever client feeds it, an EventSource gives
the tracker's events (core.tracker.events), and the same figures about its link."""
from __future__ import annotations

import pytest

from agi_daemon.asterisk.ami import AmiClient, AmiEvent
from agi_daemon.asterisk.ari import EVENT_TYPES, AriClient, AriEvent
from agi_daemon.asterisk.event_source import AmiEventSource, AriEventSource, EventSource
from agi_daemon.core.model import Direction
from agi_daemon.core.tracker import ChannelCreated, ChannelHungUp

AT = "2026-12-02T02:28:34.079+0000"


def ami_source() -> tuple[EventSource, list]:
    client = AmiClient("127.0.0.1", 1, "agi-daemon", "unused")
    fields = {"Uniqueid": "c1", "Linkedid": "L1", "Channel": "Local/0184880000@agi-daemon-incoming-1;2",
              "Context": "agi-daemon-incoming", "Exten": "0184880000", "CallerIDNum": "+33611223344", "Cause": "16"}
    items = [AmiEvent("Newchannel", fields, 1.0), AmiEvent("VarSet", fields, 1.0), AmiEvent("Hangup", fields, 2.0)]
    return AmiEventSource(client), items


def ari_source() -> tuple[EventSource, list]:
    client = AriClient("http://127.0.0.1:1", "agi-daemon", "unused", "agi-daemon", event_types=EVENT_TYPES)
    channel = {"id": "c1", "name": "Local/0184880000@agi-daemon-incoming-1;2", "caller": {"number": "+33611223344"},
               "dialplan": {"context": "agi-daemon-incoming", "exten": "0184880000"},
               "channelvars": {"CHANNEL(linkedid)": "L1"}}
    items = [AriEvent("ChannelCreated", {"timestamp": AT, "channel": channel}, 1.0),
             AriEvent("ChannelVarset", {"timestamp": AT, "channel": channel}, 1.0),
             AriEvent("ChannelDestroyed", {"timestamp": AT, "cause": 16, "channel": channel}, 2.0)]
    return AriEventSource(client), items


@pytest.mark.parametrize("make", [ami_source, ari_source], ids=["ami", "ari"])
async def test_either_source_gives_the_same_tracker_events_and_ends_when_closed(make):
    source, items = make()
    for item in items:
        source.client.queue.put_nowait(item)
    assert (source.backlog, source.connected, source.reconnects, source.dropped) == (3, False, 0, 0)
    await source.close()  # never run: closing ends the stream once the queue is read
    events = [event async for event in source.events()]
    assert [type(event) for event in events] == [ChannelCreated, ChannelHungUp]
    created = events[0].channel
    assert (created.uniqueid, created.linkedid, created.exten, created.caller_id, created.entry) == (
        "c1", "L1", "0184880000", "+33611223344", Direction.INCOMING)
