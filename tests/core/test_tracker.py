"""The call tracker fold: recorded Asterisk 22 sequences, then hand-built tables of cases."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agi_daemon.asterisk.ami import AmiResync, ChannelSnapshot
from agi_daemon.asterisk.ari import AriResync
from agi_daemon.asterisk.ami.model import parse_duration
from agi_daemon.asterisk.ami.translate import translate
from agi_daemon.asterisk.ari.translate import translate as translate_ari
from agi_daemon.core.model import Dialing, Direction, Disposition, Transfer, TransferKind
from agi_daemon.core.tracker import (
    ENDED_MEMORY,
    BridgeEntered,
    BridgeLeft,
    CallEnded,
    Unrouted,
    Channel,
    ChannelCreated,
    ChannelHungUp,
    DialEnded,
    DialStarted,
    LiveChannel,
    Reassign,
    RecentlyEnded,
    Resynced,
    TrackerState,
    Transferred,
    call_disposition,
    channel_endpoint,
    employee_for_channel,
    step,
)
from tests.fixtures import AMI_DIR, ARI_DIR, ami_fixture_names, ami_items, ari_fixture_names, ari_items

from tests.fakes.rules import CLIENT, PARIS, make_rules

RULES = make_rules()  # alice 101 (line Paris), bob 102; endpoints Local/{extension}@employees
EXTERNAL = "+33699887766"
A, B = TransferKind.ATTENDED, TransferKind.BLIND


def run(events, rules=RULES, state=None):
    state = state or TrackerState()
    effects = []
    for event in events:
        state, more = step(rules, state, event)
        effects.extend(more)
    return state, effects


def records(effects):
    return [effect.record for effect in effects if isinstance(effect, CallEnded)]


def reassigns(effects):
    return [effect for effect in effects if isinstance(effect, Reassign)]


# ---------------------------------------------------------------- recorded sequences

def recorded_events(name, transport="ami"):
    """The tracker events of the recording `name`, heard over AMI or ARI."""
    if transport == "ari":
        return [event for event in map(translate_ari, ari_items(name)) if event is not None]
    return [event for event in map(translate, ami_items(name)) if event is not None]


def replay(name, transport="ami"):
    return run(recorded_events(name, transport))


TRANSPORTS = ("ami", "ari")  # the same calls recorded over each; one table of expected outcomes


def raw_times(name):
    """The reference times, read straight from the recording, without the tracker:
    first Newchannel (or resync), the DialEnd ANSWER of a channel's Dial (not one an employee's
    endpoint makes to the desk phone behind it: "Local/101@employees-…;2"), the last Hangup."""
    items = json.loads((AMI_DIR / f"{name}.json").read_text())
    at = lambda item: datetime.fromtimestamp(item["received_at"], tz=timezone.utc)  # noqa: E731
    start = min(at(item) for item in items if "resync" in item or item["event"] == "Newchannel")
    answers = [at(item) for item in items if item.get("event") == "DialEnd"
               and item["fields"].get("Channel") and item["fields"]["DialStatus"] == "ANSWER"
               and not re.match(r"Local/\d+@employees-.*;2$", item["fields"]["Channel"])]
    end = max(at(item) for item in items if item.get("event") == "Hangup")
    return start, (answers[0] if answers else None), end


FIXTURES = {
    # name: direction, number, employees, answered_by, disposition, transfers
    "incoming_answered": (Direction.INCOMING, CLIENT, ("alice",), "alice", Disposition.ANSWERED, ()),
    # alice's endpoint Dial()s her desk phone: the inner Dial is no leg of the call
    "incoming_answered_deskphone": (Direction.INCOMING, CLIENT, ("alice",), "alice", Disposition.ANSWERED, ()),
    "incoming_missed": (Direction.INCOMING, CLIENT, ("alice", "bob"), None, Disposition.MISSED, ()),
    "incoming_blind_transfer": (Direction.INCOMING, CLIENT, ("alice", "bob"), "alice",
                                Disposition.ANSWERED, (Transfer("alice", "bob", B),)),
    "incoming_attended_transfer": (Direction.INCOMING, CLIENT, ("alice", "bob"), "alice",
                                   Disposition.ANSWERED, (Transfer("alice", "bob", A),)),
    "incoming_attended_transfer_target_gone": (Direction.INCOMING, CLIENT, ("alice", "bob"), "alice",
                                               Disposition.ANSWERED, (Transfer("alice", "bob", A),)),
    "outgoing_answered": (Direction.OUTGOING, EXTERNAL, ("alice",), None, Disposition.ANSWERED, ()),
    "incoming_busy_then_answered": (Direction.INCOMING, CLIENT, ("alice", "bob"), "bob",
                                    Disposition.ANSWERED, ()),
    "incoming_blind_transfer_after_resync": (Direction.INCOMING, CLIENT, ("alice", "bob"), "alice",
                                             Disposition.ANSWERED, (Transfer("alice", "bob", B),)),
}


def test_every_recorded_fixture_has_its_expected_outcome():
    assert sorted(FIXTURES) == ami_fixture_names() == ari_fixture_names()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_recorded_call_ends_with_one_record_of_what_happened(name, transport):
    direction, number, employees, answered_by, disposition, transfers = FIXTURES[name]
    state, effects = replay(name, transport)
    [record] = records(effects)
    assert (record.direction, record.line, record.number) == (direction, PARIS, number)
    assert record.employees == employees
    assert (record.answered_by, record.disposition, record.transfers) == (answered_by, disposition, transfers)
    assert record.entity is None
    assert state.calls == {}


@pytest.mark.parametrize("name", sorted(set(FIXTURES) - {"incoming_blind_transfer_after_resync"}))
def test_recorded_call_times_come_from_the_events(name):
    start, answer, end = raw_times(name)
    [record] = records(replay(name)[1])
    assert (record.started_at, record.answered_at, record.ended_at) == (start, answer, end)
    assert record.ring_seconds == pytest.approx(((answer or end) - start).total_seconds(), abs=1e-3)
    assert record.talk_seconds == pytest.approx((end - answer).total_seconds() if answer else 0.0, abs=1e-3)


def raw_ari_times(name):
    """The reference times of an ARI recording, read straight from it: first ChannelCreated (or
    resync), the Dial ANSWER of a channel's dial (not an endpoint's to its desk phone, as
    raw_times), the last ChannelDestroyed."""
    items = json.loads((ARI_DIR / f"{name}.json").read_text())
    at = lambda item: datetime.fromisoformat(item["body"]["timestamp"])  # noqa: E731
    start = min(at(item) for item in items if item.get("type") == "ChannelCreated")
    answers = [at(item) for item in items if item.get("type") == "Dial"
               and item["body"].get("caller") and item["body"]["dialstatus"] == "ANSWER"
               and not re.match(r"Local/\d+@employees-.*;2$", item["body"]["caller"]["name"])]
    end = max(at(item) for item in items if item.get("type") == "ChannelDestroyed")
    return start, (answers[0] if answers else None), end


@pytest.mark.parametrize("name", sorted(set(FIXTURES) - {"incoming_blind_transfer_after_resync"}))
def test_recorded_call_times_over_ari_come_from_the_events(name):
    start, answer, end = raw_ari_times(name)
    [record] = records(replay(name, "ari")[1])
    assert (record.started_at, record.answered_at, record.ended_at) == (start, answer, end)
    assert record.ring_seconds == pytest.approx(((answer or end) - start).total_seconds(), abs=1e-3)


def test_recorded_answered_call_talks_about_two_seconds_and_rings_briefly():
    [record] = records(replay("incoming_answered")[1])
    assert 1.9 <= record.talk_seconds <= 3.0
    assert record.ring_seconds < 0.5


def test_recorded_missed_call_rings_until_the_caller_hangs_up():
    [record] = records(replay("incoming_missed")[1])
    assert record.answered_at is None and record.talk_seconds == 0.0
    assert 2.5 <= record.ring_seconds <= 5.0  # 101 for 2 s, then 102 until the caller gave up


def test_recorded_late_join_call_is_rebuilt_from_the_resync():
    start, _, end = raw_times("incoming_blind_transfer_after_resync")
    [record] = records(replay("incoming_blind_transfer_after_resync")[1])
    assert record.started_at <= start and record.ended_at == end
    assert record.answered_at is not None and record.talk_seconds >= (end - start).total_seconds() - 1e-3


@pytest.mark.parametrize("name, kind", [("incoming_blind_transfer", B), ("incoming_attended_transfer", A),
                                        ("incoming_attended_transfer_target_gone", A),
                                        ("incoming_blind_transfer_after_resync", B)])
def test_recorded_transfer_emits_a_reassign_to_the_target(name, kind):
    state, effects = replay(name)
    [reassign] = reassigns(effects)
    [record] = records(effects)
    assert reassign == Reassign(record.linkedid, PARIS, "bob", kind)
    assert effects.index(reassign) < effects.index(CallEnded(record))


@pytest.mark.parametrize("name", ["incoming_answered", "incoming_missed", "outgoing_answered",
                                  "incoming_busy_then_answered"])
def test_recorded_call_without_transfer_emits_no_reassign(name):
    assert reassigns(replay(name)[1]) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_recorded_call_on_a_line_the_config_does_not_list_is_not_tracked(name, transport):
    rules = replace(RULES, lines={})
    state, effects = run(recorded_events(name, transport), rules)
    assert effects == [] and state.calls == {}


def snapshot_at(name, k):
    """The AmiResync a client logging in just before the k-th recorded item would get: the
    channels alive then, as CoreShowChannels lists them (built from the recorded events)."""
    items = json.loads((AMI_DIR / f"{name}.json").read_text())
    alive: dict[str, dict] = {}
    for item in items[:k]:
        if "resync" in item:
            alive = {f["Uniqueid"]: dict(f, created=item["received_at"] - parse_duration(f["Duration"]))
                     for f in item["resync"]}
            continue
        f, event = item["fields"], item["event"]
        uid = f.get("Uniqueid")
        if not uid:
            continue
        if event == "Hangup":
            alive.pop(uid, None)
            continue
        known = alive.setdefault(uid, {"created": item["received_at"], "BridgeId": ""})
        known.update({key: f[key] for key in ("Channel", "Uniqueid", "Linkedid", "Context", "Exten",
                                              "ChannelStateDesc", "CallerIDNum") if key in f})
        if event in ("BridgeEnter", "BridgeLeave"):
            known["BridgeId"] = f["BridgeUniqueid"] if event == "BridgeEnter" else ""
    at = items[k - 1]["received_at"]
    channels = tuple(ChannelSnapshot.from_fields({**known, "Duration": str(int(at - known["created"]))})
                     for known in alive.values())
    return AmiResync(channels, at)


def reconnection_points(name):
    return [(name, k) for k in range(1, len(json.loads((AMI_DIR / f"{name}.json").read_text())))]


def mid_call_points(name):
    """Points where a late join can still rebuild the whole story: a channel still stands in
    the daemon's context (after a blind transfer the client's channel is elsewhere), and
    nothing of the answer or a transfer has been torn down yet (no BridgeLeave, no transfer)."""
    items = json.loads((AMI_DIR / f"{name}.json").read_text())
    points = []
    for _, k in reconnection_points(name):
        if any(item.get("event") in ("BridgeLeave", "BlindTransfer", "AttendedTransfer") for item in items[:k]):
            break
        if any(c.context.startswith("agi-daemon-") for c in snapshot_at(name, k).channels):
            points.append((name, k))
    return points


ALL_POINTS = [point for name in sorted(FIXTURES) for point in reconnection_points(name)]
MID_CALL_POINTS = [point for name in sorted(FIXTURES) for point in mid_call_points(name)]


@pytest.mark.parametrize("name, k", ALL_POINTS)
def test_recorded_call_with_a_resync_anywhere_gives_the_same_record(name, k):
    """A reconnection that lost nothing: the snapshot agrees with what was seen."""
    items = ami_items(name)
    events = [event for event in map(translate, items[:k] + [snapshot_at(name, k)] + items[k:]) if event]
    state, effects = run(events)
    assert records(effects) == records(replay(name)[1]) and reassigns(effects) == reassigns(replay(name)[1])


@pytest.mark.parametrize("name, k", MID_CALL_POINTS)
def test_recorded_call_joined_late_mid_call_still_gives_its_outcome(name, k):
    """The daemon (re)connects at item k, everything before it lost: the snapshot rebuilds the
    call, and what follows completes it."""
    direction, number, employees, answered_by, disposition, transfers = FIXTURES[name]
    items = ami_items(name)
    events = [event for event in map(translate, [snapshot_at(name, k)] + items[k:]) if event]
    state, effects = run(events)
    [record] = records(effects)
    assert (record.direction, record.line, record.number) == (direction, PARIS, number)
    assert (record.answered_by, record.disposition) == (answered_by, disposition)
    assert set(record.employees) <= set(employees)
    assert set(record.transfers) <= set(transfers) and state.calls == {}


def ari_snapshot_at(name, k):
    """The AriResync an ARI client connecting just before the k-th recorded item would get:
    GET /channels (each channel as last shown) and GET /bridges, built from the recorded events."""
    items = json.loads((ARI_DIR / f"{name}.json").read_text())
    alive: dict[str, dict] = {}
    bridges: dict[str, list[str]] = {}
    for item in items[:k]:
        if "resync" in item:
            alive = {c["id"]: c for c in item["resync"]["channels"]}
            bridges = {b["id"]: list(b["channels"]) for b in item["resync"]["bridges"]}
            continue
        body = item["body"]
        for key in ("channel", "peer", "caller", "transferee", "transfer_target", "transferer_first_leg"):
            shown = body.get(key)
            if shown and shown["id"] in alive or (key == "channel" and item["type"] == "ChannelCreated"):
                alive[shown["id"]] = shown
        if item["type"] == "ChannelDestroyed":
            alive.pop(body["channel"]["id"], None)
        elif item["type"] == "ChannelEnteredBridge":
            bridges.setdefault(body["bridge"]["id"], []).append(body["channel"]["id"])
        elif item["type"] == "ChannelLeftBridge":
            members = bridges.get(body["bridge"]["id"], [])
            if body["channel"]["id"] in members:
                members.remove(body["channel"]["id"])
    last = items[k - 1]
    at = datetime.fromisoformat(last["body"]["timestamp"]).timestamp() if "body" in last else last["received_at"]
    listed = tuple({"id": bid, "channels": members} for bid, members in bridges.items() if members)
    return AriResync(tuple(alive.values()), listed, at)


def ari_mid_call_points(name):
    """As `mid_call_points`, over ARI."""
    items = json.loads((ARI_DIR / f"{name}.json").read_text())
    points = []
    for k in range(1, len(items)):
        if any(item.get("type") in ("ChannelLeftBridge", "BridgeBlindTransfer", "BridgeAttendedTransfer")
               for item in items[:k]):
            break
        if any((c.get("dialplan") or {}).get("context", "").startswith("agi-daemon-")
               for c in ari_snapshot_at(name, k).channels):
            points.append((name, k))
    return points


ARI_POINTS = [(name, k) for name in sorted(FIXTURES)
              for k in range(1, len(json.loads((ARI_DIR / f"{name}.json").read_text())))]
ARI_MID_CALL_POINTS = [point for name in sorted(FIXTURES) for point in ari_mid_call_points(name)]


@pytest.mark.parametrize("name, k", ARI_POINTS)
def test_recorded_ari_call_with_a_resync_anywhere_gives_the_same_record(name, k):
    """A reconnection over ARI that lost nothing: GET /channels and /bridges agree with what was seen."""
    items = ari_items(name)
    events = [event for event in map(translate_ari, items[:k] + [ari_snapshot_at(name, k)] + items[k:]) if event]
    state, effects = run(events)
    assert records(effects) == records(replay(name, "ari")[1])
    assert reassigns(effects) == reassigns(replay(name, "ari")[1])


@pytest.mark.parametrize("name, k", ARI_MID_CALL_POINTS)
def test_recorded_ari_call_joined_late_mid_call_still_gives_its_outcome(name, k):
    direction, number, employees, answered_by, disposition, transfers = FIXTURES[name]
    events = [event for event in map(translate_ari, [ari_snapshot_at(name, k)] + ari_items(name)[k:]) if event]
    state, effects = run(events)
    [record] = records(effects)
    assert (record.direction, record.line, record.number) == (direction, PARIS, number)
    assert (record.answered_by, record.disposition) == (answered_by, disposition)
    assert set(record.employees) <= set(employees)
    assert set(record.transfers) <= set(transfers) and state.calls == {}


def test_ari_recordings_give_late_join_points_to_check():
    assert len(ARI_MID_CALL_POINTS) >= len(FIXTURES)


# ---------------------------------------------------------------- hand-built sequences

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def trunk(linkedid="L1", entry=Direction.INCOMING, exten="0184880000", caller=CLIENT, context=None):
    """The client's channel (incoming) or the employee's phone (outgoing): the entry channel."""
    context = context or ("agi-daemon-incoming" if entry is Direction.INCOMING else "agi-daemon-outgoing")
    return Channel(linkedid, f"PJSIP/trunk-{linkedid}", linkedid, context, exten, caller, entry)


def leg(extension: str, n: int, linkedid="L1") -> Channel:
    return Channel(f"{linkedid}.{n}", f"Local/{extension}@employees-0000000{n};1", linkedid, "employees", extension)


def created(channel, at):
    return ChannelCreated(channel, t(at))


def dial(caller, dest, at, status=None):
    if status is None:
        return DialStarted(caller, dest, f"{dest.exten}@employees", t(at))
    return DialEnded(caller, dest, status, t(at))


def hangup(channel, at):
    return ChannelHungUp(channel, "16", t(at))


def incoming(*legs_and_statuses, end=30.0):
    """An incoming call ringing each (extension, status) in turn, 5 s each, then the client
    hangs up at `end`."""
    client = trunk()
    events = [created(client, 0)]
    for n, (extension, status) in enumerate(legs_and_statuses, start=1):
        employee = leg(extension, n)
        events += [created(employee, 5 * n - 5 + 0.1), dial(client, employee, 5 * n - 5 + 0.2)]
        if status:
            events.append(dial(client, employee, 5 * n, status))
        events.append(hangup(employee, 5 * n + 0.01) if status not in ("ANSWER", None) else hangup(employee, end))
    events.append(hangup(client, end))
    return events


@pytest.mark.parametrize(
    "legs, disposition, answered_by",
    [
        ([("101", "ANSWER")], Disposition.ANSWERED, "alice"),
        ([("101", "NOANSWER"), ("102", "ANSWER")], Disposition.ANSWERED, "bob"),
        ([("101", "BUSY"), ("102", "BUSY")], Disposition.BUSY, None),
        ([("101", "BUSY"), ("102", "NOANSWER")], Disposition.MISSED, None),
        ([("101", "BUSY"), ("102", "CANCEL")], Disposition.MISSED, None),
        ([("101", "NOANSWER"), ("102", None)], Disposition.MISSED, None),  # still ringing at the end
        ([("101", "CHANUNAVAIL"), ("102", "CONGESTION")], Disposition.FAILED, None),
        ([("101", "BUSY"), ("102", "CHANUNAVAIL")], Disposition.FAILED, None),
        ([], Disposition.MISSED, None),  # hung up before anyone was dialled
    ],
    ids=["answered", "second-answers", "all-busy", "busy-then-noanswer", "busy-then-cancel",
         "hangup-while-ringing", "all-failed", "busy-and-failed", "no-leg"],
)
def test_incoming_legs_give_the_disposition_and_who_answered(legs, disposition, answered_by):
    [record] = records(run(incoming(*legs))[1])
    assert (record.disposition, record.answered_by) == (disposition, answered_by)
    assert record.employees == tuple({"101": "alice", "102": "bob"}[ext] for ext, _ in legs)


def test_answered_call_rings_until_the_answer_and_talks_until_the_last_hangup():
    [record] = records(run(incoming(("101", "NOANSWER"), ("102", "ANSWER"), end=42.5))[1])
    assert (record.started_at, record.answered_at, record.ended_at) == (t(0), t(10), t(42.5))
    assert (record.ring_seconds, record.talk_seconds) == (10.0, 32.5)


def test_unanswered_call_rings_for_its_whole_length():
    [record] = records(run(incoming(("101", "NOANSWER"), end=12.0))[1])
    assert (record.ring_seconds, record.talk_seconds, record.answered_at) == (12.0, 0.0, None)


@pytest.mark.parametrize("status, disposition", [
    ("ANSWER", Disposition.ANSWERED), ("BUSY", Disposition.BUSY), ("NOANSWER", Disposition.MISSED),
    ("CHANUNAVAIL", Disposition.FAILED)])
def test_outgoing_call_disposition_comes_from_the_trunk_leg(status, disposition):
    phone = trunk(entry=Direction.OUTGOING, exten="0699887766", caller="101")
    line = Channel("L1.1", "PJSIP/+33699887766@trunk-00000001", "L1", "trunk", "+33699887766")
    events = [created(phone, 0), created(line, 1),
              DialStarted(phone, line, "+33699887766@trunk", t(1)), DialEnded(phone, line, status, t(4)),
              hangup(line, 20), hangup(phone, 20)]
    [record] = records(run(events)[1])
    assert (record.direction, record.line, record.number) == (Direction.OUTGOING, PARIS, EXTERNAL)
    assert (record.disposition, record.employees, record.answered_by) == (disposition, ("alice",), None)


@pytest.mark.parametrize("caller, tracked", [("102", True), ("555", False)], ids=["employee", "not-an-employee"])
def test_employee_dialling_the_trunk_directly_is_tracked_as_outgoing(caller, tracked):
    """The call never entered agi-daemon-outgoing (the admin's own dialplan dialled the
    trunk): an employee's extension dialling trunk_template is still an outgoing call."""
    phone = Channel("L1", "PJSIP/102-00000001", "L1", "from-phones", "0699887766", caller)
    line = Channel("L1.1", "Local/0699887766@trunk-00000001;1", "L1", "trunk", "0699887766")
    events = [created(phone, 0), created(line, 1),
              DialStarted(phone, line, "0699887766@trunk", t(1)), DialEnded(phone, line, "ANSWER", t(3)),
              hangup(line, 13), hangup(phone, 13)]
    found = records(run(events)[1])
    if not tracked:
        assert found == []
        return
    [record] = found
    assert (record.direction, record.line, record.number) == (Direction.OUTGOING, PARIS, EXTERNAL)
    assert (record.disposition, record.employees, record.talk_seconds) == (Disposition.ANSWERED, ("bob",), 10.0)
    # the daemon was never asked: its dial to the trunk starts what routing would have done (R3, R4)
    state, effects = run(events[:3])
    [unrouted] = [effect for effect in effects if isinstance(effect, Unrouted)]
    assert (unrouted.call.linkedid, unrouted.call.employee.id, unrouted.call.external) == ("L1", "bob", EXTERNAL)
    assert [e for e in run(events)[1] if isinstance(e, Unrouted)] == [unrouted]  # once per call


def test_a_call_the_daemon_routed_has_nothing_left_to_submit():
    phone = trunk(entry=Direction.OUTGOING, exten="0699887766", caller="101")
    line = Channel("L1.1", "PJSIP/+33699887766@trunk-00000001", "L1", "trunk", "+33699887766")
    events = [created(phone, 0), created(line, 1), DialStarted(phone, line, "+33699887766@trunk", t(1)),
              DialEnded(phone, line, "ANSWER", t(4)), hangup(line, 20), hangup(phone, 20)]
    assert [effect for effect in run(events)[1] if isinstance(effect, Unrouted)] == []


def test_duplicate_hangups_end_the_call_once():
    events = incoming(("101", "ANSWER"))
    events += [hangup(trunk(), 31), hangup(leg("101", 1), 31), hangup(trunk(), 32)]
    state, effects = run(events)
    assert len(records(effects)) == 1 and state.calls == {}


def test_call_ends_on_the_last_hangup_of_all_its_channels():
    client, alice = trunk(), leg("101", 1)
    events = [created(client, 0), created(alice, 1), dial(client, alice, 1), dial(client, alice, 3, "ANSWER"),
              hangup(client, 10)]
    state, effects = run(events)
    assert effects == [] and "L1" in state.calls
    state, effects = step(RULES, state, hangup(alice, 11))
    [effect] = effects
    assert effect.record.ended_at == t(11) and state.calls == {}


def test_hangup_of_an_unknown_linkedid_is_ignored():
    state, effects = run(incoming(("101", "NOANSWER")))[0], None
    before = state
    state, effects = step(RULES, state, hangup(trunk("L9"), 3))
    assert effects == () and state == before


def test_events_of_untracked_calls_emit_nothing_and_are_forgotten():
    internal = Channel("L5", "PJSIP/101-00000005", "L5", "internal", "102", "101")
    bob = leg("102", 6, "L5")
    events = [created(internal, 0), created(bob, 1), dial(internal, bob, 1), dial(internal, bob, 2, "ANSWER"),
              Transferred(B, bob, internal, None, "101", t(3)), hangup(bob, 5), hangup(internal, 5)]
    state, effects = run(events)
    assert effects == [] and state.calls == {}


def test_events_of_a_linkedid_never_created_are_ignored():
    client, alice = trunk("L7"), leg("101", 1, "L7")
    state, effects = run([dial(client, alice, 1), dial(client, alice, 2, "ANSWER"),
                          BridgeEntered(alice, "b1", t(2)), hangup(client, 9)])
    assert effects == [] and state.calls == {}


def test_call_on_an_unknown_line_is_not_tracked():
    client, alice = trunk(exten="0499999999"), leg("101", 1)
    events = [created(client, 0), created(alice, 1), dial(client, alice, 1), dial(client, alice, 2, "ANSWER"),
              Transferred(B, alice, client, None, "102", t(3)), hangup(alice, 4), hangup(client, 4)]
    state, effects = run(events)
    assert effects == [] and state.calls == {}


def test_call_entering_the_dialplan_after_creation_is_tracked_from_its_first_channel():
    """A trunk channel starts in the admin's own context, then Goto(agi-daemon-incoming)."""
    before = replace(trunk(), context="from-trunk", entry=None)
    alice = leg("101", 1)
    events = [created(before, 0), created(alice, 2), dial(trunk(), alice, 2), dial(trunk(), alice, 4, "ANSWER"),
              hangup(trunk(), 9), hangup(alice, 9)]
    [record] = records(run(events)[1])
    assert (record.started_at, record.answered_by, record.number) == (t(0), "alice", CLIENT)


def test_call_routed_to_nobody_is_identified_at_its_hangup():
    [record] = records(run([created(replace(trunk(), context="from-trunk", entry=None), 0),
                            hangup(trunk(), 1)])[1])
    assert (record.disposition, record.employees, record.ring_seconds) == (Disposition.MISSED, (), 1.0)


def test_unknown_caller_id_at_creation_is_completed_by_a_later_event():
    """Local channels are created with caller ID "<unknown>"; the Dial shows the real one."""
    early, alice = trunk(caller="<unknown>"), leg("101", 1)
    events = [created(early, 0), created(alice, 1), dial(trunk(), alice, 1), dial(trunk(), alice, 2, "ANSWER"),
              hangup(trunk(), 5), hangup(alice, 5)]
    [record] = records(run(events)[1])
    assert record.number == CLIENT


def test_outgoing_employee_known_only_later_sets_the_employee_and_line():
    early = trunk(entry=Direction.OUTGOING, exten=EXTERNAL, caller="<unknown>")
    known = replace(early, caller_id="102")
    line = Channel("L1.1", "PJSIP/+33699887766@trunk-00000001", "L1", "trunk", EXTERNAL)
    state, effects = run([created(early, 0), created(line, 1), DialStarted(known, line, "x@trunk", t(1)),
                          hangup(line, 2), hangup(known, 2)])
    [record] = records(effects)
    assert (record.employees, record.disposition) == (("bob",), Disposition.MISSED)


def test_dials_without_a_calling_channel_are_not_legs():
    """Originate and the Atxfer consultation dial with no calling channel."""
    client, alice = trunk(), leg("101", 1)
    events = [created(client, 0), DialStarted(None, client, "x@originate", t(0)), created(alice, 1),
              dial(client, alice, 1), dial(client, alice, 3, "BUSY"), DialEnded(None, client, "NOANSWER", t(4)),
              hangup(alice, 4), hangup(client, 5)]
    [record] = records(run(events)[1])
    assert record.disposition is Disposition.BUSY


def test_missing_dial_end_is_made_up_by_an_employee_entering_a_bridge():
    client, alice = trunk(), leg("101", 1)
    events = [created(client, 0), created(alice, 1), dial(client, alice, 1),
              BridgeEntered(alice, "b1", t(3)), hangup(client, 8), hangup(alice, 8)]
    [record] = records(run(events)[1])
    assert (record.disposition, record.answered_by, record.answered_at) == (Disposition.ANSWERED, "alice", t(3))


# ---------------------------------------------------------------- transfers

def answered_by_alice():
    client, alice = trunk(), leg("101", 1)
    return client, alice, [created(client, 0), created(alice, 1), dial(client, alice, 1),
                           dial(client, alice, 3, "ANSWER")]


def test_blind_transfer_to_an_extension_reassigns_to_that_employee():
    client, alice, events = answered_by_alice()
    events += [Transferred(B, alice, client, None, "102", t(10)), hangup(alice, 10), hangup(client, 20)]
    state, effects = run(events)
    assert effects[0] == Reassign("L1", PARIS, "bob", B)
    [record] = records(effects)
    assert record.transfers == (Transfer("alice", "bob", B),)
    assert (record.answered_by, record.employees, record.talk_seconds) == ("alice", ("alice", "bob"), 17.0)


def test_a_reload_mid_call_leaves_the_call_its_line_and_employees():
    """The admin removes the call's line and renumbers alice while she talks: the call keeps
    what it entered with, is still reassigned at its transfer and ends with its record (a call
    left without one stayed on the agents' call windows until a restart)."""
    client, alice, events = answered_by_alice()
    state, _ = run(events)
    reloaded = replace(RULES, lines={}, employees={**RULES.employees,
                                                   "alice": replace(RULES.employees["alice"], extension="109")})
    state, effects = run([Transferred(B, alice, client, None, "102", t(10)), hangup(alice, 10),
                          hangup(client, 20)], rules=reloaded, state=state)
    assert reassigns(effects) == [Reassign("L1", PARIS, "bob", B)]
    [record] = records(effects)
    assert (record.line, record.answered_by, record.employees) == (PARIS, "alice", ("alice", "bob"))


def test_attended_transfer_target_is_read_from_its_channel():
    client, alice, events = answered_by_alice()
    consult = Channel("L2", "Local/102@employees-0000000b;1", "L2", "employees", "s")
    events += [Transferred(A, alice, client, consult, "", t(10)), hangup(alice, 10), hangup(client, 20)]
    effects = run(events)[1]
    assert reassigns(effects) == [Reassign("L1", PARIS, "bob", A)]


def test_attended_transfer_without_target_channel_finds_the_target_in_the_destination_bridge():
    """Asterisk often builds AttendedTransfer after the target left the consultation bridge:
    no TransferTarget* headers, only DestBridgeUniqueid, the bridge the target just entered."""
    client, alice, events = answered_by_alice()
    bob = leg("102", 2)
    events += [BridgeEntered(client, "b1", t(3)), created(bob, 8), BridgeEntered(bob, "b2", t(9)),
               BridgeLeft(bob, "b2", t(10)), BridgeEntered(bob, "b1", t(10)),
               Transferred(A, alice, client, None, "", t(10), bridge_id="b1"),
               hangup(alice, 10), hangup(client, 20), hangup(bob, 20)]
    effects = run(events)[1]
    assert reassigns(effects) == [Reassign("L1", PARIS, "bob", A)]
    assert records(effects)[0].transfers == (Transfer("alice", "bob", A),)


def test_transfer_to_a_number_that_is_no_employee_is_recorded_without_reassign():
    client, alice, events = answered_by_alice()
    events += [Transferred(B, alice, client, None, "0612345678", t(10)), hangup(alice, 10), hangup(client, 20)]
    effects = run(events)[1]
    assert reassigns(effects) == []
    assert records(effects)[0].transfers == (Transfer("alice", None, B),)


def test_second_transfer_is_from_the_employee_the_client_talks_to():
    client, alice, events = answered_by_alice()
    unknown_phone = Channel("L1.9", "PJSIP/softphone-0000000c", "L1", "internal", "s")
    events += [Transferred(B, alice, client, None, "102", t(10)),
               Transferred(B, unknown_phone, client, None, "101", t(15)), hangup(alice, 10), hangup(client, 20)]
    effects = run(events)[1]
    assert [r.employee_id for r in reassigns(effects)] == ["bob", "alice"]
    assert records(effects)[0].transfers == (Transfer("alice", "bob", B), Transfer("bob", "alice", B))


def test_outgoing_transfer_is_from_the_calling_employee():
    phone = trunk(entry=Direction.OUTGOING, exten=EXTERNAL, caller="101")
    line = Channel("L1.1", "PJSIP/+33699887766@trunk-00000001", "L1", "trunk", EXTERNAL)
    events = [created(phone, 0), created(line, 0), DialStarted(phone, line, "x@trunk", t(0)),
              DialEnded(phone, line, "ANSWER", t(2)), Transferred(A, phone, line, leg("102", 3, "L1"), "", t(5)),
              hangup(phone, 5), hangup(line, 9)]
    effects = run(events)[1]
    assert reassigns(effects) == [Reassign("L1", PARIS, "bob", A)]
    assert records(effects)[0].transfers == (Transfer("alice", "bob", A),)


def test_transfer_of_an_untracked_call_emits_no_reassign():
    internal = Channel("L5", "PJSIP/103-00000005", "L5", "internal", "101", "103")
    alice = leg("101", 1, "L5")
    effects = run([created(internal, 0), created(alice, 0), Transferred(B, alice, internal, None, "102", t(1))])[1]
    assert effects == []


def test_consultation_channel_moved_into_the_call_keeps_it_alive_until_it_hangs_up():
    """SIP attended transfer: 101 consults 102 in a call of its own (L2); after the transfer
    Asterisk gives 102's channel the client call's linkedid (the bridge's oldest)."""
    client, alice, events = answered_by_alice()
    alice_again = Channel("L2", "PJSIP/101-0000000d", "L2", "internal", "102", "101")
    bob = Channel("L2.1", "Local/102@employees-0000000e;1", "L2", "employees", "102")
    events += [created(alice_again, 5), created(bob, 5), dial(alice_again, bob, 5), dial(alice_again, bob, 7, "ANSWER"),
               hangup(alice_again, 10), hangup(alice, 10),
               BridgeEntered(replace(bob, linkedid="L1"), "b1", t(10)),
               Transferred(A, alice, client, replace(bob, linkedid="L1"), "", t(10)),
               hangup(client, 30)]
    state, effects = run(events)
    assert records(effects) == [] and set(state.calls) == {"L1"}
    state, effects = step(RULES, state, hangup(replace(bob, linkedid="L1"), 31))
    [effect] = effects
    assert effect.record.ended_at == t(31) and effect.record.employees == ("alice", "bob")
    assert state.calls == {}


# ---------------------------------------------------------------- resync

def live(channel, age, state="Up", bridge=""):
    return LiveChannel(channel, state, bridge, age)


def test_call_gone_during_a_disconnection_ends_with_what_was_seen():
    client, alice, events = answered_by_alice()
    events.append(BridgeEntered(client, "b1", t(6)))
    state, effects = run(events + [Resynced((), t(60))])
    [record] = records(effects)
    assert (record.disposition, record.answered_by, record.ended_at) == (Disposition.ANSWERED, "alice", t(6))
    assert state.calls == {}


def test_ringing_call_gone_during_a_disconnection_is_missed():
    client, alice = trunk(), leg("101", 1)
    state, effects = run([created(client, 0), created(alice, 1), dial(client, alice, 1), Resynced((), t(60))])
    [record] = records(effects)
    assert (record.disposition, record.ended_at, record.ring_seconds) == (Disposition.MISSED, t(1), 1.0)


def test_calls_gone_during_a_disconnection_end_oldest_first():
    state, _ = run([created(trunk(linkedid), n) for n, linkedid in enumerate(["L9", "L1", "L5", "L3"])])
    state, effects = step(RULES, state, Resynced((), t(60)))
    assert [record.linkedid for record in records(effects)] == ["L9", "L1", "L5", "L3"]
    assert tuple(state.ended) == ("L9", "L1", "L5", "L3")


def test_call_ended_at_resync_is_never_recorded_again_by_late_events():
    client, alice, events = answered_by_alice()
    state, effects = run(events + [Resynced((), t(60)), created(client, 61), hangup(client, 62)])
    assert len(records(effects)) == 1 and state.calls == {}


def test_call_unknown_before_the_resync_is_rebuilt_and_still_transferred_and_recorded():
    client, alice = trunk(), leg("101", 1)
    snapshot = Resynced((live(client, 40, bridge="b1"), live(alice, 30, bridge="b1")), t(100))
    events = [snapshot, Transferred(B, alice, client, None, "102", t(110)), hangup(alice, 110), hangup(client, 130)]
    state, effects = run(events)
    assert reassigns(effects) == [Reassign("L1", PARIS, "bob", B)]
    [record] = records(effects)
    assert (record.started_at, record.answered_at, record.ended_at) == (t(60), t(70), t(130))
    assert (record.answered_by, record.employees) == ("alice", ("alice", "bob"))
    assert record.disposition is Disposition.ANSWERED
    assert record.transfers == (Transfer("alice", "bob", B),)


def test_ringing_call_rebuilt_from_the_resync_is_answered_by_a_later_dial_end():
    client, bob = trunk(), leg("102", 2)
    events = [Resynced((live(client, 12, "Ring"), live(bob, 2, "Ringing")), t(100)),
              dial(client, bob, 103, "ANSWER"), hangup(client, 110), hangup(bob, 110)]
    [record] = records(run(events)[1])
    assert (record.started_at, record.answered_at, record.answered_by) == (t(88), t(103), "bob")


def test_resync_drops_channels_that_hung_up_while_disconnected():
    client, alice, events = answered_by_alice()
    state, _ = run(events + [Resynced((live(client, 60, bridge="b1"),), t(60))])
    assert state.calls["L1"].channels == frozenset({client.uniqueid})
    state, effects = step(RULES, state, hangup(client, 70))
    [record] = records(effects)
    assert (record.ended_at, record.answered_at) == (t(70), t(3))


def test_snapshot_of_a_call_outside_the_daemon_contexts_is_not_tracked():
    internal = Channel("L5", "PJSIP/101-00000005", "L5", "internal", "102", "101")
    state, effects = run([Resynced((live(internal, 3),), t(10)), hangup(internal, 12)])
    assert effects == [] and state.calls == {}


def test_ended_linkedids_are_remembered_only_up_to_a_limit():
    state = TrackerState()
    for n in range(ENDED_MEMORY + 5):
        state, _ = run([created(trunk(f"C{n}"), n), hangup(trunk(f"C{n}"), n)], state=state)
    assert len(state.ended) == ENDED_MEMORY and state.ended[-1] == f"C{ENDED_MEMORY + 4}"


# ---------------------------------------------------------------- the state: index, memory, sharing

def check_state(state):
    """What every state between two events must satisfy: each live channel is in exactly one
    call, and the uniqueid -> linkedid index says which; no call is empty or already ended."""
    channels = [(uid, call.linkedid) for call in state.calls.values() for uid in call.channels]
    assert dict(state.owners) == dict(channels)
    assert len(state.owners) == len(channels)  # no channel in two calls
    assert all(call.channels for call in state.calls.values())
    assert not any(linkedid in state.ended for linkedid in state.calls)
    assert len(state.ended) <= ENDED_MEMORY


def run_checked(events, state=None):
    state = state or TrackerState()
    effects = []
    for event in events:
        state, more = step(RULES, state, event)
        check_state(state)
        effects.extend(more)
    ended = [record.linkedid for record in records(effects)]
    assert len(ended) == len(set(ended))  # never twice
    return state, effects


@pytest.mark.parametrize("name, k", [(name, None) for name in sorted(FIXTURES)] + ALL_POINTS)
def test_recorded_call_keeps_the_channel_index_in_step_after_every_event(name, k):
    items = ami_items(name)
    if k is not None:
        items = items[:k] + [snapshot_at(name, k)] + items[k:]
    state, _ = run_checked([event for event in map(translate, items) if event])
    assert state.calls == {} and dict(state.owners) == {}


def test_recorded_calls_interleaved_on_one_tracker_each_give_the_record_they_give_alone():
    """Many calls in progress at once: each call's events only touch that call."""
    names = [name for name in sorted(FIXTURES) if "resync" not in name]  # a resync ends the others
    queues = [recorded_events(name) for name in names]
    interleaved = [queue[i] for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]
    busy, _ = run([created(trunk(f"B{n}"), n) for n in range(50)])  # calls going on all along
    state, effects = run_checked(interleaved, busy)
    assert sorted(records(effects), key=lambda r: r.linkedid) == sorted(
        (record for name in names for record in records(replay(name)[1])), key=lambda r: r.linkedid)
    assert set(state.calls) == {f"B{n}" for n in range(50)}


def test_a_step_leaves_the_state_it_started_from_unchanged():
    events = recorded_events("incoming_attended_transfer")
    middle, _ = run(events[: len(events) // 2])
    calls, owners, ended = dict(middle.calls), dict(middle.owners), tuple(middle.ended)
    run(events[len(events) // 2:], state=middle)
    assert (dict(middle.calls), dict(middle.owners), tuple(middle.ended)) == (calls, owners, ended)


def test_channel_created_again_under_another_linkedid_moves_to_that_call():
    """One channel, one call: the event that shows a new linkedid moves the channel, so the
    call it left still ends when its own last channel hangs up."""
    client, alice, events = answered_by_alice()
    state, effects = run_checked(events + [created(replace(alice, linkedid="L2"), 5)])
    assert (state.calls["L1"].channels, state.calls["L2"].channels) == ({client.uniqueid}, {alice.uniqueid})
    state, effects = run_checked([hangup(client, 10)], state)
    [record] = records(effects)
    assert (record.linkedid, record.ended_at) == ("L1", t(10)) and set(state.calls) == {"L2"}


LINKEDIDS = ["L1", "L2", "L3"]
UNIQUEIDS = ["L1", "L2", "L3", "L1.1", "L1.2", "L2.1"]


def any_channel():
    """A channel of the pool under any linkedid (so channels move between calls), maybe
    standing in an entry context."""
    return st.builds(
        lambda uid, linkedid, entry: Channel(uid, f"Local/{101 + len(uid) % 2}@employees-0000000{len(uid)};1",
                                             linkedid, "agi-daemon-incoming" if entry else "employees",
                                             "0184880000", CLIENT, entry),
        st.sampled_from(UNIQUEIDS), st.sampled_from(LINKEDIDS), st.sampled_from([None, Direction.INCOMING]))


def any_event():
    at = st.just(T0)  # times are set in order below
    status = st.sampled_from(["ANSWER", "BUSY", "NOANSWER", "CANCEL", "CHANUNAVAIL"])
    bridge = st.sampled_from(["b1", "b2"])
    live_channel = st.builds(live, any_channel(), st.floats(0, 60), st.just("Up"), st.sampled_from(["", "b1"]))
    return st.one_of(
        st.builds(ChannelCreated, any_channel(), at),
        st.builds(DialStarted, st.none() | any_channel(), any_channel(), st.just("102@employees"), at),
        st.builds(DialEnded, st.none() | any_channel(), any_channel(), status, at),
        st.builds(BridgeEntered, any_channel(), bridge, at),
        st.builds(BridgeLeft, any_channel(), bridge, at),
        st.builds(Transferred, st.sampled_from([A, B]), any_channel(), st.none() | any_channel(),
                  st.none() | any_channel(), st.sampled_from(["", "102"]), at, bridge),
        st.builds(ChannelHungUp, any_channel(), st.just("16"), at),
        st.builds(Resynced, st.lists(live_channel, max_size=4).map(tuple), at),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(any_event(), max_size=40))
def test_any_event_sequence_keeps_the_channel_index_in_step(events):
    run_checked([replace(event, at=t(n)) for n, event in enumerate(events)])


@pytest.mark.parametrize("period", [1, 7, 300, ENDED_MEMORY, ENDED_MEMORY + 1, 2000],
                         ids=lambda period: f"period-{period}")
def test_ended_memory_keeps_the_last_linkedids_in_order_like_a_bounded_tuple(period):
    """`ended` behaves as `(ended + (linkedid,))[-ENDED_MEMORY:]`, repeats included."""
    memory, model = RecentlyEnded(), ()
    for n in range(2 * ENDED_MEMORY + 50):
        linkedid = f"C{n % period}"
        memory, model = memory.remember(linkedid), (model + (linkedid,))[-ENDED_MEMORY:]
        if n % 97 == 0 or n >= 2 * ENDED_MEMORY + 40:
            assert tuple(memory) == model and memory == model and len(memory) == len(model)
            assert memory[-1] == model[-1] and memory[0] == model[0]
            assert all((f"C{m}" in memory) == (f"C{m}" in model) for m in range(min(period, 2000)))


# ---------------------------------------------------------------- pieces

@pytest.mark.parametrize("answered, statuses, disposition", [
    (True, ["BUSY"], Disposition.ANSWERED),
    (False, ["NOANSWER", "ANSWER"], Disposition.ANSWERED),
    (False, [], Disposition.MISSED),
    (False, ["BUSY", "BUSY"], Disposition.BUSY),
    (False, ["BUSY", ""], Disposition.MISSED),
    (False, ["CONGESTION", "BUSY"], Disposition.FAILED),
    (False, ["SOMETHING-NEW"], Disposition.FAILED),
])
def test_leg_statuses_give_the_call_disposition(answered, statuses, disposition):
    assert call_disposition(answered, statuses) is disposition


@pytest.mark.parametrize("name, endpoint", [
    ("PJSIP/101-0000000a", "PJSIP/101"),
    ("Local/101@employees-00000003;1", "Local/101@employees"),
    ("Local/101@employees-00000003;2", "Local/101@employees"),
    ("PJSIP/trunk-out", "PJSIP/trunk-out"),
    ("SIP/alice-b-00ab12cd", "SIP/alice-b"),
])
def test_channel_name_gives_the_dialled_endpoint(name, endpoint):
    assert channel_endpoint(name) == endpoint


@pytest.mark.parametrize("template, name, employee", [
    ("Local/{extension}@employees", "Local/102@employees-00000009;1", "bob"),
    ("Local/{extension}@employees", "Local/103@employees-00000009;1", None),
    ("PJSIP/{extension}", "PJSIP/101-00000004", "alice"),
    ("PJSIP/{extension}", "PJSIP/trunk-00000004", None),
    ("PJSIP/{extension}", "", None),
])
def test_channel_name_maps_to_the_employee_of_the_endpoint_template(template, name, employee):
    rules = replace(RULES, dialing=Dialing(template, "PJSIP/{number}@trunk"))
    assert employee_for_channel(rules, name) == employee
