"""Hand-written CRMs: one in memory (MemoryCrm), and stand-ins around the real embedded CRM
that are slower, failing, or must never be called."""
from __future__ import annotations

import asyncio
import itertools

from dataclasses import replace
from datetime import UTC, datetime

from agi_daemon.core.commands import (
    CallLedger, CallReport, ChangeResponsible, CreateCallRecords, CrmCommand, LogCall, RecordOffer, merge_call_log,
)
from agi_daemon.core.model import (
    CallRecord, CreatedRecords, CreateWith, CrmMode, EntityRef, EntityType, Match, Offer, RecordPlan,
)
from agi_daemon.core.ports import CrmUnavailable, WouldWait
from agi_daemon.crm import outbox_store
from agi_daemon.crm.embedded import EmbeddedCrm
from agi_daemon.crm.embedded_delivery import store_and_apply


class SlowCrm:
    """The real store, but every lookup takes `delay` seconds (a CRM under load)."""

    def __init__(self, real: EmbeddedCrm, delay: float) -> None:
        self.real = real
        self.delay = delay

    async def find_by_phone(self, phone):
        await asyncio.sleep(self.delay)
        return await self.real.find_by_phone(phone)

    def find_by_phone_now(self, phone):
        raise WouldWait("a slow CRM answers only when asked the usual way")

    def __getattr__(self, name):
        return getattr(self.real, name)


class FlakyCrm:
    """The real store, but the first `failures` lookups fail as if the CRM were down."""

    def __init__(self, real: EmbeddedCrm, failures: int) -> None:
        self.real = real
        self.failures = failures

    async def find_by_phone(self, phone):
        if self.failures > 0:
            self.failures -= 1
            raise CrmUnavailable("CRM down for the test")
        return await self.real.find_by_phone(phone)

    def find_by_phone_now(self, phone):
        raise WouldWait("a failing CRM answers only when asked the usual way")

    def __getattr__(self, name):
        return getattr(self.real, name)


class UntouchableCrm:
    """A CRM that must never be called: every method records the attempt and raises."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name):
        async def forbidden(*args, **kwargs):
            self.calls.append(name)
            raise AssertionError(f"the CRM was asked {name}")

        return forbidden


def store_of(crm) -> EmbeddedCrm | None:
    """The real embedded store a fake wraps (or is), else None."""
    while not isinstance(crm, EmbeddedCrm):
        crm = crm.__dict__.get("real")
        if crm is None:
            return None
    return crm


class DirectCommands:
    """The outbox's commands on the real embedded store, each stored and applied in one
    transaction as soon as it is submitted (the outbox's own direct path, without its worker)."""

    def __init__(self, store: EmbeddedCrm) -> None:
        self.store = store

    async def submit(self, command: CrmCommand) -> None:
        await self.store.transaction("test: submit", lambda conn: store_and_apply(conn, command, datetime.now(UTC)),
                                     write=True)

    async def ledger(self, linkedid: str) -> CallLedger:
        return await self.store.transaction("test: ledger", lambda conn: outbox_store.ledger(conn, linkedid), write=False)


def commands_for(crm):
    """What services submit commands to in a test: the memory CRM itself, else the real store
    the fake wraps."""
    if isinstance(crm, MemoryCrm):
        return crm
    inner = crm.__dict__.get("real")
    if isinstance(inner, MemoryCrm):
        return inner
    store = store_of(crm)
    return crm if store is None else DirectCommands(store)  # UntouchableCrm: submitting fails the test


class MemoryCrm:
    """The CRM contract in memory, written by hand for services tests that need no SQLite:
    known clients, the records calls create (with their responsible), offers and the call log
    (one entry per linkedid, kept as core.commands.merge_call_log says). It is also the
    outbox: a submitted command is applied at once, as the embedded delivery applies it
    (look before create, the ledger per call). `lookups` lists every number looked up."""

    def __init__(self) -> None:
        self.known: dict[str, Match] = {}
        self.created: dict[str, CreatedRecords] = {}  # linkedid -> the records that call created
        self.phones: dict[str, str] = {}  # linkedid -> the number whose records the call created
        self.responsible: dict[EntityRef, str | None] = {}
        self.offers: dict[str, Offer] = {}
        self.calls: dict[str, CallRecord] = {}
        self.lookups: list[str] = []
        self.ledgers: dict[str, CallLedger] = {}
        self.keys: set[str] = set()
        self._ids = itertools.count(1)

    async def submit(self, command: CrmCommand) -> None:
        if command.key in self.keys:
            return
        self.keys.add(command.key)
        known = self.ledgers.get(command.linkedid, CallLedger(command.linkedid))
        if isinstance(command, CreateCallRecords):
            if known.created is None and known.joined is None:
                match = self.known.get(command.plan.phone) or self._created_for(command.plan.phone)
                if match is not None:
                    self.ledgers[command.linkedid] = replace(known, joined=match)
                else:
                    created = await self.create_records(command.plan)
                    self.ledgers[command.linkedid] = replace(known, created=created)
        elif isinstance(command, RecordOffer):
            await self.record_offer(command.offer)
        elif isinstance(command, LogCall):
            entity = known.entity or command.record.entity
            if entity is None and command.look_up is not None:
                match = self.known.get(command.look_up)
                entity = match.entity if match else self._created_for(command.look_up)
            kept = merge_call_log(self.calls.get(command.linkedid), replace(command.record, entity=entity),
                                  command.report)
            if kept is not None:
                self.calls[command.linkedid] = kept
        elif isinstance(command, ChangeResponsible) and known.created is not None:
            await self.set_responsible(known.created.all, command.employee)

    def _created_for(self, phone: str) -> EntityRef | None:
        for linkedid, ledger in self.ledgers.items():
            if ledger.created is not None and self.phones.get(linkedid) == phone:
                return ledger.created.primary
        return None

    async def ledger(self, linkedid: str) -> CallLedger:
        return self.ledgers.get(linkedid, CallLedger(linkedid))

    def add_known(self, phone: str, kind: EntityType, responsible: str | None) -> Match:
        match = Match(EntityRef(kind, next(self._ids)), responsible, "Client")
        self.known[phone] = match
        self.responsible[match.entity] = responsible
        return match

    def new_ref(self, kind: EntityType) -> EntityRef:
        ref = EntityRef(kind, next(self._ids))
        return ref

    async def find_by_phone(self, phone: str) -> Match | None:
        self.lookups.append(phone)
        match = self.known.get(phone)
        return None if match is None else Match(match.entity, self.responsible.get(match.entity), match.name)

    async def records_created_by_call(self, linkedid: str) -> CreatedRecords | None:
        return self.created.get(linkedid)

    async def create_records(self, plan: RecordPlan) -> CreatedRecords:
        if plan.linkedid in self.created:  # idempotent per call
            return self.created[plan.linkedid]
        lead = self.new_ref(EntityType.LEAD)
        if plan.mode is CrmMode.CLASSIC:
            records = CreatedRecords(lead)
        else:
            deal = self.new_ref(EntityType.DEAL)
            party = self.new_ref(EntityType.CONTACT if plan.create_with is CreateWith.CONTACT else EntityType.COMPANY)
            records = CreatedRecords(lead, deal, *((party, None) if party.type is EntityType.CONTACT else (None, party)))
        self.created[plan.linkedid] = records
        self.phones[plan.linkedid] = plan.phone
        for ref in records.all:
            self.responsible[ref] = plan.responsible
        return records

    async def record_offer(self, offer: Offer) -> None:
        self.offers.setdefault(offer.linkedid, offer)

    async def set_responsible(self, entities: tuple[EntityRef, ...], employee: str) -> None:
        for ref in entities:
            self.responsible[ref] = employee

    async def log_call(self, record: CallRecord, *, keep_existing: bool = False) -> None:
        report = CallReport.TRACKED if not keep_existing else CallReport.PARTIAL if record.partial else CallReport.HANGUP
        kept = merge_call_log(self.calls.get(record.linkedid), record, report)
        if kept is not None:
            self.calls[record.linkedid] = kept

    async def close(self) -> None:
        pass
