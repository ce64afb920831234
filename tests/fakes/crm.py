"""Hand-written CRMs: one in memory (MemoryCrm), and stand-ins around the real embedded CRM
that are slower, failing, or must never be called."""
from __future__ import annotations

import asyncio
import itertools

from agi_daemon.core.model import (
    CallRecord, CreatedRecords, CreateWith, CrmMode, EntityRef, EntityType, Match, Offer, RecordPlan,
)
from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.crm.embedded import EmbeddedCrm


class SlowCrm:
    """The real store, but every lookup takes `delay` seconds (a CRM under load)."""

    def __init__(self, real: EmbeddedCrm, delay: float) -> None:
        self.real = real
        self.delay = delay

    async def find_by_phone(self, phone):
        await asyncio.sleep(self.delay)
        return await self.real.find_by_phone(phone)

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


class MemoryCrm:
    """The CrmAdapter contract in memory, written by hand for services tests that need no
    SQLite: known clients, the records calls create (with their responsible), offers and the
    call log (one entry per linkedid, with the same keep_existing / partial rules as the
    embedded CRM). `lookups` lists every number looked up."""

    def __init__(self) -> None:
        self.known: dict[str, Match] = {}
        self.created: dict[str, CreatedRecords] = {}  # linkedid -> the records that call created
        self.responsible: dict[EntityRef, str | None] = {}
        self.offers: dict[str, Offer] = {}
        self.calls: dict[str, CallRecord] = {}
        self.lookups: list[str] = []
        self._ids = itertools.count(1)

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
        for ref in records.all:
            self.responsible[ref] = plan.responsible
        return records

    async def record_offer(self, offer: Offer) -> None:
        self.offers.setdefault(offer.linkedid, offer)

    async def set_responsible(self, entities: tuple[EntityRef, ...], employee: str) -> None:
        for ref in entities:
            self.responsible[ref] = employee

    async def log_call(self, record: CallRecord, *, keep_existing: bool = False) -> None:
        existing = self.calls.get(record.linkedid)
        if existing is not None and keep_existing and (record.partial or not existing.partial):
            return
        self.calls[record.linkedid] = record

    async def close(self) -> None:
        pass
