"""AMI call tracking, in-process: the recorded AMI events of real calls (tests/fixtures/ami)
replayed through the edge translation and the tracker fold, from an idle tracker and on top of
1,000 calls in progress (a busy call centre must not make each event dearer); and the AMI
codec parsing those events from raw bytes."""
from __future__ import annotations

import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from agi_daemon.asterisk.ami import AmiParser, AmiResync
from agi_daemon.asterisk.ami.translate import translate
from agi_daemon.core.model import Direction, Rules
from agi_daemon.core.tracker import (
    BridgeEntered,
    Channel,
    ChannelCreated,
    DialEnded,
    DialStarted,
    TrackerState,
    step,
)
from agi_daemon.settings import load_settings
from tests.daemon_harness import write_config
from tests.fixtures import ami_fixture_names, ami_items


def bench_rules() -> Rules:
    with tempfile.TemporaryDirectory() as tmp:
        return load_settings(write_config(Path(tmp), ami=(1, "agi-daemon", "unused"))).rules


def tracking(rules: Rules, rounds: int) -> dict[str, float]:
    return replay(rules, [ami_items(name) for name in ami_fixture_names()], translate, rounds, "tracking")


def replay(rules: Rules, calls: list[list[Any]], translate_item: Callable[[Any], Any], rounds: int,
           label: str) -> dict[str, float]:
    """Recorded calls (AMI or ARI items) through the edge's translation and the tracker fold,
    `rounds` times each from an idle tracker: CPU per call and per event."""
    events = sum(len(items) for items in calls)
    started = time.process_time()
    for _ in range(rounds):
        for items in calls:
            state = TrackerState()
            for item in items:
                event = translate_item(item)
                if event is not None:
                    state, _ = step(rules, state, event)
    spent = time.process_time() - started
    return {
        f"{label}, translate + fold (µs CPU/call)": spent / (rounds * len(calls)) * 1e6,
        f"{label}, translate + fold (µs CPU/event)": spent / (rounds * events) * 1e6,
    }


def calls_in_progress(rules: Rules, count: int) -> TrackerState:
    """A tracker following `count` answered incoming calls on the Paris line, from hand-built
    events: each a client's channel in agi-daemon-incoming dialling alice's Local channel, both
    in the call's bridge."""
    at = datetime(2025, 1, 1, 9, 0, tzinfo=timezone.utc)
    state = TrackerState()
    for n in range(count):
        linkedid = f"busy-{n}"
        client = Channel(linkedid, f"PJSIP/trunk-{n:08x}", linkedid, "agi-daemon-incoming", "0184880000",
                         f"+3361{n:07d}", Direction.INCOMING)
        agent = Channel(f"{linkedid}.1", f"Local/101@employees-{n:08x};1", linkedid, "employees", "101")
        for event in (ChannelCreated(client, at), ChannelCreated(agent, at),
                      DialStarted(client, agent, "101@employees", at), DialEnded(client, agent, "ANSWER", at),
                      BridgeEntered(client, f"bridge-{n}", at), BridgeEntered(agent, f"bridge-{n}", at)):
            state, _ = step(rules, state, event)
    assert len(state.calls) == count
    return state


def tracking_busy(rules: Rules, count: int, rounds: int) -> float:
    """µs CPU per event of the recorded calls replayed (translate + fold, as `tracking`) on
    top of `count` calls in progress: each recorded call starts from that same busy state.
    Calls recorded across a resync are left out: a resync lists every live channel, so it is
    a reconnection's cost (the snapshot would end the hand-built calls), not an event's."""
    busy = calls_in_progress(rules, count)
    calls = [items for items in map(ami_items, ami_fixture_names())
             if not any(isinstance(item, AmiResync) for item in items)]
    events = sum(len(items) for items in calls)
    started = time.process_time()
    for _ in range(rounds):
        for items in calls:
            state = busy
            for item in items:
                event = translate(item)
                if event is not None:
                    state, _ = step(rules, state, event)
            assert len(state.calls) == count  # the recorded call has ended, the others go on
    return (time.process_time() - started) / (rounds * events) * 1e6


def ami_codec(rounds: int) -> dict[str, float]:
    items = [i for name in ami_fixture_names() for i in ami_items(name) if hasattr(i, "fields")]
    wire = b"".join(
        "".join(f"{k}: {v}\r\n" for k, v in {"Event": i.name, **dict(i.fields)}.items()).encode() + b"\r\n"
        for i in items)
    started = time.process_time()
    for _ in range(rounds):
        parser = AmiParser()
        parser.feed(b"Asterisk Call Manager/9.0.0\r\n")
        parser.feed(wire)
    spent = time.process_time() - started
    return {"AMI codec, parse (µs CPU/event)": spent / (rounds * len(items)) * 1e6}
