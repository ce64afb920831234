"""What call tracking reads (the events both edges, AMI and ARI, translate the wire into: the
contract between them and the fold) and what it asks for (the effects)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

from ..model import CallRecord, Direction, TransferKind
from ..rules import CallFacts

# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel as one event shows it. `entry` is set by the edge when `context` is one of
    the daemon's entry contexts (incoming or outgoing, fallbacks included)."""

    uniqueid: str
    name: str
    linkedid: str
    context: str = ""
    exten: str = ""
    caller_id: str = ""  # CallerIDNum
    entry: Direction | None = None


@dataclass(frozen=True, slots=True)
class ChannelCreated:
    channel: Channel
    at: datetime


@dataclass(frozen=True, slots=True)
class DialStarted:
    caller: Channel | None  # None for dials no channel made (Originate, Atxfer consultation)
    destination: Channel
    dial_string: str  # "101@employees" for Local/101@employees, "101" for PJSIP/101
    at: datetime


@dataclass(frozen=True, slots=True)
class DialEnded:
    caller: Channel | None
    destination: Channel
    status: str  # DialStatus: ANSWER, BUSY, NOANSWER, CANCEL, CHANUNAVAIL ...
    at: datetime


@dataclass(frozen=True, slots=True)
class BridgeEntered:
    channel: Channel
    bridge_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class BridgeLeft:
    channel: Channel
    bridge_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Transferred:
    """A successful blind or attended transfer."""

    kind: TransferKind
    transferer: Channel  # the employee's channel that transferred
    transferee: Channel | None  # the party handed over (the client)
    target: Channel | None  # attended: the channel the transferee now talks to, when named
    target_extension: str  # blind: the extension dialled; attended: the target's extension
    at: datetime
    bridge_id: str = ""  # attended: the bridge the transferee and the target end up in


@dataclass(frozen=True, slots=True)
class ChannelHungUp:
    channel: Channel
    cause: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LiveChannel:
    """One channel alive at a resync."""

    channel: Channel
    state: str  # "Up", "Ringing" ...
    bridge_id: str  # "" when not in a bridge
    age_seconds: float  # since the channel was created


@dataclass(frozen=True, slots=True)
class Resynced:
    """The channels alive after a (re)connection; events missed before it are lost."""

    channels: tuple[LiveChannel, ...]
    at: datetime


TrackerEvent = Union[ChannelCreated, DialStarted, DialEnded, BridgeEntered, BridgeLeft, Transferred,
                     ChannelHungUp, Resynced]

# ---------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A tracked call is over: its R12 record (entity None: the service finds it).

    `partial`: the call ended while the AMI link was down, so its end (and maybe its answer)
    was not seen; the record is a best guess that must not replace a better one."""

    record: CallRecord
    partial: bool = False


@dataclass(frozen=True)
class Unrouted:
    """A call the daemon was never asked about has started: an employee dialled the trunk
    outside agi-daemon-outgoing (a dialplan of the admin's own, a speed dial). What routing
    would have submitted for it (R3, R4) is still to be submitted, before anything else the
    call does (a transfer's R10, its log)."""

    call: CallFacts


@dataclass(frozen=True, slots=True)
class Reassign:
    """R10 candidate: the call was manually transferred to an employee."""

    linkedid: str
    line: str  # E.164
    employee_id: str  # the transfer target
    kind: TransferKind
    # the client's E.164 number: where the outbox orders the call's CRM commands (not part of
    # what the transfer is, so not compared)
    external: str | None = field(default=None, compare=False)


Effect = Union[CallEnded, Reassign, Unrouted]
