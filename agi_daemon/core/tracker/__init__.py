"""Call tracking (R10, R12): a pure fold over channel events, keyed by the Asterisk linkedid.

The package: `events` (what both edges, AMI and ARI, translate the wire into: the contract),
`state` (what is known of the calls in progress), `fold` (`step`: one event applied),
`record` (the R12 record of a call that ended).

    state = TrackerState()
    for event in events:                      # from agi_daemon.asterisk.ami.translate
        state, effects = step(rules, state, event)
        for effect in effects: ...            # CallEnded(record) / Reassign(...) / Unrouted(call)

Pure: no asyncio, no I/O, no clock. Every time comes from the events, which the edge stamps.
The edge also says which channels stand in one of the daemon's entry contexts
(`Channel.entry`): the core knows nothing of dialplan context names.

What a call is
  Every channel belongs to the call named by its linkedid (Asterisk's "oldest channel of the
  call"). A call starts with its first channel and ends when its LAST channel has hung up.
  Channels move between calls when Asterisk rewrites their linkedid (a channel joining a
  bridge takes the bridge's oldest linkedid, as after an attended transfer made with a
  separate consultation call): the event that shows the new linkedid moves the channel.

Which calls are tracked
  A call is tracked when one of its channels is seen in an entry context
  (agi-daemon-incoming / -outgoing or their fallbacks; any event showing the channel there
  will do, so a trunk channel that starts in the admin's own context and is sent there by
  Goto counts from its creation). `call_facts` applies `rules.identify` to that entry
  (incoming: EXTEN is the line, caller ID the client; outgoing: caller ID is the employee's
  extension, EXTEN the dialled number), when needed (a transfer, the end): the line, the
  external number, the calling employee. A line the config does not list: never tracked.
  An outgoing call that never passed through those contexts is tracked too: a channel whose
  caller ID is an employee's extension dialling the trunk (`asterisk.trunk_template`, read
  back by `outcome.trunk_number`) enters the call as outgoing to that number.
  Other calls (internal calls, consultation calls) are followed only to know when their
  channels leave; they emit nothing. Local channels show "<unknown>" as caller ID when they
  are created: a later sighting of the entry with a real caller ID completes it. R7/R8
  exclusions are NOT applied here: the record carries direction, line and number and the
  service screens it.

Dial legs
  A leg is a Dial made by a channel of the call (DialBegin with a calling channel). Dials
  without a calling channel (the originate that places a test call, the consultation call an
  Atxfer places) are not legs. Each leg names the employee it rings: the DialString
  ("101@employees", "101") through `outcome.employee_for_peer`, else the dialled channel
  ("PJSIP/101-00000002", "Local/101@employees-00000003;1", either Local half) through
  `employee_for_channel`. `employees` on the record: every employee rung or transferred to,
  in the order it happened, without repeats; outgoing calls start with the calling employee.

Answer, ring and talk
  The call is answered by the first leg that ends with DialStatus ANSWER: `answered_at` is
  that DialEnd's time; incoming, `answered_by` is the leg's employee (outgoing calls keep
  answered_by None, as `outcome.call_record` does: the employee placed the call). Should that
  DialEnd be missing (a resync in between), a bridge joining two channels of the call, or,
  incoming, holding an employee's channel, counts as the answer, at the BridgeEnter.
  ring_seconds = (answered_at or ended_at) - started_at; talk_seconds = ended_at - answered_at
  (0 when never answered), transfers included: after a transfer the talk goes on with the
  target, answered_by stays the first answerer.

Disposition (from every leg's DialStatus, each mapped by `outcome.disposition_for`)
  answered  the call was answered (see above);
  missed    no leg at all (the caller hung up before anyone was dialled), or at least one leg
            rang out or was cancelled (NOANSWER, CANCEL; a leg still ringing at the end counts
            as CANCEL): someone could have picked up;
  busy      every leg ended BUSY;
  failed    otherwise: every leg failed (CHANUNAVAIL, CONGESTION, ...), or busy and failed
            legs mixed with none ringing out.

Transfers
  Only successful transfers reach the core (the edge drops `Result` other than Success).
  from: the employee of the transferer's channel, else the employee the client was talking to
  (outgoing: the calling employee). to: blind, the employee whose extension was dialled;
  attended, the employee of the transfer target's channel; Asterisk often leaves that channel
  out of the event (it has already moved on when the event is built), then the employee whose
  channel last joined the bridge the transferee ends up in (DestBridgeUniqueid), else of the
  target's extension. Each transfer is recorded, and when `to` is an employee a `Reassign`
  effect names the call's linkedid, line, target and kind; whether to apply it (new client,
  line setting) is the service's business.

Resync (after every AMI (re)connection, from the live channels)
  A tracked call absent from the snapshot ended while the link was down: its CallEnded is
  emitted at once (the oldest call's first), ended at the last event seen for it, disposition
  from the legs seen.
  A call in the snapshot but unknown here is re-created from it (started `age` seconds before
  the snapshot; answered when its bridges say so, as above), so a later transfer
  and the hangup still produce the record. Calls in both get the snapshot's channel list.
  CallEnded is never emitted twice for a linkedid: ended linkedids are remembered (the last
  `ENDED_MEMORY`) and ignored if their channels show up again in late events.

What an event costs
  The same with 10 calls in progress as with 5,000: a busy call centre must not slow the
  event loop down. The state is made of persistent maps (`immutables.Map`, a hash array mapped
  trie): a new version shares all but O(log n) of its nodes with the one it came from, so
  storing or forgetting a call copies nothing else, and the old state stays valid (the fold
  remains pure). Next to the calls, an index names the call that has each live channel
  (uniqueid -> linkedid), so a hangup or a moved channel finds its call without looking at
  every call's channels; it is kept in step with the calls' channel sets by `_put` and `_end`,
  the only writers, and a channel is in one call at most. The ended linkedids are a persistent
  map too (membership is a lookup) plus their order (to forget the oldest). Only a resync,
  which lists every live channel anyway, looks at every call.
"""
from __future__ import annotations

from .events import (
    BridgeEntered,
    BridgeLeft,
    CallEnded,
    Channel,
    ChannelCreated,
    ChannelHungUp,
    DialEnded,
    DialStarted,
    Effect,
    LiveChannel,
    Reassign,
    Resynced,
    TrackerEvent,
    Transferred,
    Unrouted,
)
from .fold import Step, call_facts, step
from .record import call_disposition, channel_endpoint, employee_for_channel, record_for
from .state import ENDED_MEMORY, Bridged, CallsInProgress, CallState, DialLeg, RecentlyEnded, TrackerState

__all__ = [
    "ENDED_MEMORY", "BridgeEntered", "BridgeLeft", "Bridged", "CallEnded", "CallState", "CallsInProgress",
    "Channel", "ChannelCreated", "ChannelHungUp", "DialEnded", "DialLeg", "DialStarted", "Effect",
    "LiveChannel", "Reassign", "RecentlyEnded", "Resynced", "Step", "TrackerEvent", "TrackerState",
    "Transferred", "call_disposition", "call_facts", "channel_endpoint", "employee_for_channel",
    "Unrouted", "record_for", "step",
]
