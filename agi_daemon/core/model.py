"""The PBX admin's vocabulary as frozen values: lines, queue groups, employees, CRM policy.

Pure: no I/O. `settings` builds a `Rules` from the YAML file; everything else reads it.
Phone numbers held here are already E.164 strings ("+33184880000").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Mapping


class CrmMode(StrEnum):
    CLASSIC = "classic"  # new callers create leads
    SIMPLE = "simple"  # new callers create a deal plus a contact or company


class UnknownCaller(StrEnum):
    CREATE = "create"  # create the record at the moment of the call
    OFFER = "offer"  # create nothing, offer "create lead / contact" in the call window


class CreateFor(StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"
    ALL = "all"


class CreateWith(StrEnum):
    CONTACT = "contact"
    COMPANY = "company"


class QueueStrategy(StrEnum):
    IN_ORDER = "in_order"  # members one after another, ring_seconds each
    RING_ALL = "ring_all"  # all members at once for ring_seconds


class Direction(StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class EntityType(StrEnum):
    LEAD = "lead"
    CONTACT = "contact"
    COMPANY = "company"
    DEAL = "deal"


class Disposition(StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"
    BUSY = "busy"
    FAILED = "failed"


class TransferKind(StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


@dataclass(frozen=True)
class Employee:
    id: str
    name: str
    extension: str | None = None
    phones: tuple[str, ...] = ()  # E.164: calls from/to these are never recorded (R8)
    line: str | None = None  # E.164 of the line used for this employee's outgoing calls
    admin: bool = False  # the web pages show them every call and the admin pages


@dataclass(frozen=True)
class QueueGroup:
    id: str
    members: tuple[str, ...]  # employee ids, in order; the first is the queue head (R9)
    strategy: QueueStrategy = QueueStrategy.IN_ORDER
    ring_seconds: int = 20


@dataclass(frozen=True)
class LineCrm:
    unknown_caller: UnknownCaller = UnknownCaller.CREATE
    create_for: CreateFor = CreateFor.INCOMING
    source: str = "CALL"
    route_known_to_responsible: bool = True
    responsible_ring_seconds: int = 15
    reassign_on_manual_transfer: bool = True


@dataclass(frozen=True)
class Line:
    number: str  # E.164
    name: str
    queue_group: str  # queue group id
    crm: LineCrm = field(default_factory=LineCrm)


@dataclass(frozen=True)
class CrmPolicy:
    mode: CrmMode = CrmMode.CLASSIC
    pipeline: str = "general"
    create_with: CreateWith = CreateWith.CONTACT
    exception_phones: frozenset[str] = frozenset()  # E.164 (R7)
    exception_emails: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Dialing:
    endpoint_template: str = "PJSIP/{extension}"
    trunk_template: str = "PJSIP/{number}@trunk"


@dataclass(frozen=True)
class Rules:
    """Everything the YAML file says about routing and the CRM, normalised and cross-checked."""

    default_region: str
    employees: Mapping[str, Employee]
    queue_groups: Mapping[str, QueueGroup]
    lines: Mapping[str, Line]  # keyed by E.164 number, in file order
    crm: CrmPolicy = field(default_factory=CrmPolicy)
    dialing: Dialing = field(default_factory=Dialing)

    def employee_by_extension(self, extension: str) -> Employee | None:
        for employee in self.employees.values():
            if employee.extension == extension:
                return employee
        return None

    def employee_with_phone(self, phone: str) -> Employee | None:
        for employee in self.employees.values():
            if phone in employee.phones:
                return employee
        return None


@dataclass(frozen=True)
class EntityRef:
    type: EntityType
    id: int

    def __str__(self) -> str:  # "lead:12", the JSON contract's form
        return f"{self.type.value}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> "EntityRef":
        kind, _, ident = text.partition(":")
        return cls(EntityType(kind), int(ident))


@dataclass(frozen=True)
class Match:
    """A known client: the CRM record their number belongs to, and its responsible employee."""

    entity: EntityRef
    responsible: str | None  # employee id
    name: str = ""


@dataclass(frozen=True)
class Transfer:
    from_employee: str | None
    to_employee: str | None
    kind: TransferKind


@dataclass(frozen=True)
class CallRecord:
    """What R12 records on the CRM entity once a call is over."""

    linkedid: str
    direction: Direction
    line: str  # E.164
    number: str  # the external party, E.164
    disposition: Disposition
    started_at: datetime
    ended_at: datetime
    answered_at: datetime | None = None
    answered_by: str | None = None  # employee id
    employees: tuple[str, ...] = ()  # employees involved (rung or calling)
    ring_seconds: float = 0.0
    talk_seconds: float = 0.0
    transfers: tuple[Transfer, ...] = ()
    entity: EntityRef | None = None
    partial: bool = False  # a best guess (the call ended while AMI was down): yields to any report


@dataclass(frozen=True)
class RecordPlan:
    """The CRM records a call from a new client creates (R1, R5, R9, R11).

    classic mode: one lead. simple mode: a lead recorded as converted at once, plus a deal in
    `pipeline` and a contact or a company (`create_with`).
    """

    mode: CrmMode
    phone: str  # E.164
    name: str  # shown in the CRM; the formatted number when nothing better is known
    source: str
    responsible: str | None  # employee id
    linkedid: str  # the Asterisk call that created the records
    line: str  # E.164
    direction: Direction
    pipeline: str = "general"
    create_with: CreateWith = CreateWith.CONTACT
    contact_only: bool = False  # the call window's "create contact" (R3 offer): one contact, nothing else


@dataclass(frozen=True)
class CreatedRecords:
    lead: EntityRef
    deal: EntityRef | None = None
    contact: EntityRef | None = None
    company: EntityRef | None = None

    @property
    def primary(self) -> EntityRef:
        """The record the call is logged on: the deal in simple mode, else the lead."""
        return self.deal or self.lead

    @property
    def all(self) -> tuple[EntityRef, ...]:
        """Each record once (a contact created alone stands in the lead's place too)."""
        return tuple(dict.fromkeys(ref for ref in (self.lead, self.deal, self.contact, self.company) if ref))


@dataclass(frozen=True)
class Offer:
    """R3 `offer`: the call window proposes "create lead / contact" for this call."""

    linkedid: str
    direction: Direction
    line: str  # E.164
    phone: str  # E.164 of the external party
    employees: tuple[str, ...]  # who should see the offer (queue group members, or the caller)
    created_at: datetime


NAME_MAX_LENGTH = 255  # a record's name column: SQLite does not enforce it, PostgreSQL refuses longer


def name_too_long(name: str) -> str | None:
    """Why `name` (stripped) cannot be a record's name for its length; None when it can."""
    if len(name) <= NAME_MAX_LENGTH:
        return None
    return f"the name is longer than {NAME_MAX_LENGTH} characters ({len(name):,})"


# The databases the embedded CRM keeps its records in, by a database URL's scheme
# ("postgres" is the spelling some hosts give for PostgreSQL).
EMBEDDED_DATABASES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}


def embedded_database(url: str) -> str:
    """The embedded CRM's database kind ("sqlite" or "postgresql") of a database URL, from its
    scheme ("postgresql+psycopg://" included); ValueError naming the scheme otherwise."""
    scheme = url.partition(":")[0].partition("+")[0].strip().lower()
    kind = EMBEDDED_DATABASES.get(scheme)
    if kind is None or "://" not in url:
        raise ValueError(f"the embedded CRM keeps its records in SQLite (sqlite:///path) or PostgreSQL "
                         f"(postgresql://user@host/db), not {scheme or url!r}")
    return kind
