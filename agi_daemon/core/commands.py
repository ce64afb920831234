"""What a call asks of the CRM, as commands: values committed to the daemon's own store first
(the outbox), then delivered to whichever CRM the config names.

Each command has a stable idempotency `key` derived from the call's linkedid: the same call
asks the same thing under the same key, however often it is asked (a retry, a restarted
daemon rebuilding a call's intent, a hangup report after tracking), so it is stored and
delivered once. Each command also has a `lane`: commands of one lane are delivered in order,
lanes concurrently. The lane is the external number: one call's commands keep their order,
and calls from the same new number create one set of records (the first creates them, the
others find them and join them).

The call's ledger (`CallLedger`) is what the daemon itself remembers of each call's CRM side:
the records it created (and their remote ids), the record it joined, the remote call id.
"""
from __future__ import annotations

import hashlib

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Mapping

from .model import CallRecord, CreatedRecords, Direction, EntityRef, Offer, RecordPlan


class CallReport(StrEnum):
    """Who reported a finished call; `merge_call_log` says which report the call log keeps."""

    TRACKED = "tracked"  # call tracking over AMI saw every leg: the best report, always wins
    HANGUP = "hangup"  # the dialplan's hangup handler: yields to tracking, replaces a partial
    PARTIAL = "partial"  # tracking's best guess (the call ended while AMI was down)


@dataclass(frozen=True)
class CreateCallRecords:
    """R1, R3 `create`, R5, R9, R11: the records of a new client, created by this call (or,
    when another call from the same number created them first, joined)."""

    plan: RecordPlan

    @property
    def linkedid(self) -> str:
        return self.plan.linkedid

    @property
    def key(self) -> str:
        return f"{self.plan.linkedid}/records"

    @property
    def lane(self) -> str:
        return self.plan.phone


def offer_key(linkedid: str) -> str:
    """The key of call `linkedid`'s RecordOffer: a call makes at most one offer."""
    return f"{linkedid}/offer"


@dataclass(frozen=True)
class RecordOffer:
    """R3 `offer`: the call window proposes "create lead / contact" for this call."""

    offer: Offer

    @property
    def linkedid(self) -> str:
        return self.offer.linkedid

    @property
    def key(self) -> str:
        return offer_key(self.offer.linkedid)

    @property
    def lane(self) -> str:
        return self.offer.phone


@dataclass(frozen=True)
class LogCall:
    """R12: the finished call, logged on the records the call created or joined, else on the
    known client `look_up` finds (None: log it on no record)."""

    record: CallRecord
    report: CallReport
    look_up: str | None = None  # the E.164 number to find the known client by, if allowed

    @property
    def linkedid(self) -> str:
        return self.record.linkedid

    @property
    def key(self) -> str:
        return f"{self.record.linkedid}/call/{self.report.value}"

    @property
    def lane(self) -> str:
        return self.look_up or self.record.number or f"call:{self.record.linkedid}"


@dataclass(frozen=True)
class ChangeResponsible:
    """R10: the records this call created go to `employee` (nothing, when it created none)."""

    linkedid: str
    phone: str  # the external number: the lane of the call's other commands
    employee: str
    transfer: int  # the transfer's number within the call (never reused, restarts included): each is its own command

    @property
    def key(self) -> str:
        return f"{self.linkedid}/responsible/{self.transfer}/{self.employee}"

    @property
    def lane(self) -> str:
        return self.phone


# The longest list of employees a call card's key names as it is (one employee id at most, 64
# characters): a longer one is named by its digest, so that the key of the card of a call ringing
# a whole queue group fits the outbox's key column on PostgreSQL, with the longest linkedid.
CARD_EMPLOYEES_IN_KEY = 64


@dataclass(frozen=True)
class CallCardChange:
    """A remote CRM's own call card (Bitrix24's) shown to, or hidden from, these employees for
    this call (core.call_cards says when). Delivered in the call's lane, so in order with the
    call's registration and finish; a card of a call already finished is never shown."""

    linkedid: str
    phone: str  # the external number, E.164: the lane of the call's other commands
    direction: Direction
    line: str  # E.164
    employees: tuple[str, ...]
    show: bool  # False: hide

    @property
    def key(self) -> str:
        who = "+".join(sorted(self.employees))
        if len(who) > CARD_EMPLOYEES_IN_KEY:  # a ring-all queue group: its digest keeps the key short
            who = "sha256:" + hashlib.sha256(who.encode()).hexdigest()[:32]
        return f"{self.linkedid}/card/{'show' if self.show else 'hide'}/{who}"

    @property
    def lane(self) -> str:
        return self.phone


CrmCommand = CreateCallRecords | RecordOffer | LogCall | ChangeResponsible | CallCardChange


@dataclass(frozen=True)
class CallLedger:
    """What the daemon's store remembers of one call's CRM side, whatever the adapter."""

    linkedid: str
    created: CreatedRecords | None = None  # the records this call created
    joined: EntityRef | None = None  # the records of the same number another call created first
    remote_ids: Mapping[str, str] = field(default_factory=dict)  # "lead:12" -> the remote CRM's id
    remote_call_id: str | None = None  # the remote CRM's id of the call registration
    logged: CallReport | None = None  # the report a remote CRM's call log holds (merge_call_log)

    @property
    def entity(self) -> EntityRef | None:
        """The record the call is logged on, when the call created or joined one."""
        if self.created is not None:
            return self.created.primary
        return self.joined


@dataclass(frozen=True)
class LedgerUpdate:
    """What delivering a command taught the daemon about the call: empty for most commands."""

    created: CreatedRecords | None = None
    joined: EntityRef | None = None
    remote_ids: Mapping[str, str] = field(default_factory=dict)
    remote_call_id: str | None = None
    logged: CallReport | None = None


NOTHING_LEARNED = LedgerUpdate()


def merge_call_log(existing: CallRecord | None, report: CallRecord, kind: CallReport) -> CallRecord | None:
    """The call log entry of a call after a new report: the report itself, or None when the
    entry already there stays. Tracking's full report replaces anything; the hangup handler's
    report fills an empty entry or replaces a partial one; a partial report only fills an
    empty entry."""
    return report if replaces(None if existing is None else existing.partial, kind) else None


def replaces(existing_partial: bool | None, kind: CallReport) -> bool:
    """`merge_call_log` knowing only whether an entry is there (None: none) and is partial:
    True when the new report of this kind takes its place."""
    if existing_partial is None or kind is CallReport.TRACKED:
        return True
    return kind is CallReport.HANGUP and existing_partial


def waits_for_tracking(command: CrmCommand) -> bool:
    """Whether a remote CRM's outbox holds `command` back a short grace before delivering it:
    the dialplan's hangup report, which usually arrives before call tracking's better one. A
    remote CRM may keep the first report it gets (Bitrix24 cannot un-finish a call), so the
    hangup report waits for tracking's, which supersedes it (`supersedes`); when tracking never
    reports (AMI down), the hangup report is delivered once the grace is over."""
    return isinstance(command, LogCall) and command.report is CallReport.HANGUP


def supersedes(new: CrmCommand, waiting: CrmCommand) -> bool:
    """Whether `new`, a later report of a call, makes its report `waiting` (stored, not yet
    delivered) moot: the call log would keep `new` over it (`merge_call_log`), so `waiting`
    need never be delivered."""
    if not (isinstance(new, LogCall) and isinstance(waiting, LogCall)):
        return False
    if new.linkedid != waiting.linkedid or new.report is waiting.report:
        return False
    return merge_call_log(waiting.record, new.record, new.report) is not None


# -- several PBXs on one store ----------------------------------------------------------------
# Each Asterisk numbers its calls on its own (a linkedid is the first channel's uniqueid,
# "<epoch>.<sequence>"), so two PBXs can give two calls the same linkedid. Where several
# daemons share one store, each stores its calls' linkedids as "<pbx_id>:<linkedid>" (an
# Asterisk linkedid never holds a colon): keys, ledgers, call log rows and created_by_call
# never collide, and R10 only ever reaches the records created by that very call on that PBX.

def pbx_linkedid(pbx: str | None, linkedid: str) -> str:
    """The linkedid as the store keeps it: namespaced by the PBX, when the daemon names one."""
    return linkedid if pbx is None else f"{pbx}:{linkedid}"


def split_linkedid(stored: str) -> tuple[str | None, str]:
    """(pbx_id or None, the Asterisk linkedid) of a stored linkedid."""
    pbx, colon, linkedid = stored.partition(":")
    return (pbx, linkedid) if colon else (None, stored)


def in_pbx(command: CrmCommand, pbx: str | None) -> CrmCommand:
    """`command` with its call's linkedid namespaced by `pbx` (unchanged when pbx is None)."""
    if pbx is None:
        return command
    if isinstance(command, CreateCallRecords):
        return CreateCallRecords(replace(command.plan, linkedid=pbx_linkedid(pbx, command.plan.linkedid)))
    if isinstance(command, RecordOffer):
        return RecordOffer(replace(command.offer, linkedid=pbx_linkedid(pbx, command.offer.linkedid)))
    if isinstance(command, LogCall):
        return LogCall(replace(command.record, linkedid=pbx_linkedid(pbx, command.record.linkedid)),
                       command.report, command.look_up)
    return replace(command, linkedid=pbx_linkedid(pbx, command.linkedid))


def as_seen_by(command: CrmCommand, pbx: str | None) -> CrmCommand | None:
    """A stored command as the daemon of `pbx` knows its call (the Asterisk linkedid); None
    when it is another PBX's call."""
    if pbx is None:
        return command
    owner, linkedid = split_linkedid(command.linkedid)
    if owner != pbx:
        return None
    if isinstance(command, CreateCallRecords):
        return CreateCallRecords(replace(command.plan, linkedid=linkedid))
    if isinstance(command, RecordOffer):
        return RecordOffer(replace(command.offer, linkedid=linkedid))
    if isinstance(command, LogCall):
        return LogCall(replace(command.record, linkedid=linkedid), command.report, command.look_up)
    return replace(command, linkedid=linkedid)
