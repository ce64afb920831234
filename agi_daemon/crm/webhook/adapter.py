"""The signed-webhook adapter: the outbox's commands as signed events POSTed to crm.webhook.url
(`CrmDeliverer`), and known clients from the optional lookup URL (`CrmLookup`).

- `CreateCallRecords` -> `call.started`, then `records.created` (the records the receiver
  creates: types, phone, source, responsible, pipeline). The receiver owns its ids: the daemon
  names each record by a number stable per call (`crc32(linkedid)`), so `responsible.changed`
  names the same records.
- `RecordOffer` -> `call.started` (the receiver's window offers to create).
- `LogCall` -> `call.ended`, for the first report, then again only for a better one (same
  event id: the receiver keeps the last body it got under that id); on the record the call
  created or joined, else on the known client the lookup URL names.
- `ChangeResponsible` -> `responsible.changed` for the records the call created; nothing else.

Each event carries its stable `id` (the idempotency key): a repeated delivery is the same event.
"""
from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import UTC, datetime

from agi_daemon.core.commands import (
    CallCardChange, CallLedger, ChangeResponsible, CreateCallRecords, CrmCommand, LedgerUpdate, LogCall,
    NOTHING_LEARNED, RecordOffer, replaces,
)
from agi_daemon.core.crm_errors import RemoteCrmUnavailable
from agi_daemon.core.model import CallRecord, CreatedRecords, CreateWith, CrmMode, EntityRef, EntityType, Match
from agi_daemon.core.ports import CrmUnavailable

from . import events
from .sender import WebhookSender


class WebhookCrm:
    def __init__(self, sender: WebhookSender, *, deadline_seconds: float, mode: CrmMode, pipeline: str) -> None:
        self.sender = sender
        self._deadline = deadline_seconds
        self._mode = mode
        self._pipeline = pipeline

    async def open(self) -> None:
        await self.sender.open()

    async def close(self) -> None:
        await self.sender.close()

    async def find_by_phone(self, phone: str) -> Match | None:
        return await self.sender.lookup(phone, self._deadline)

    async def deliver(self, command: CrmCommand, ledger: CallLedger) -> LedgerUpdate:
        try:
            return await self._deliver(command, ledger)
        except RemoteCrmUnavailable as error:
            raise CrmUnavailable(str(error), retry_after=error.retry_after_seconds) from None

    async def _deliver(self, command: CrmCommand, ledger: CallLedger) -> LedgerUpdate:
        now = datetime.now(UTC)
        if isinstance(command, CreateCallRecords):
            plan = command.plan
            await self.sender.send(events.call_started(plan.linkedid, now, plan.direction, plan.line, plan.phone,
                                                       tuple(e for e in (plan.responsible,) if e)))
            created = _records(plan.linkedid, plan.mode, plan.create_with, contact_only=plan.contact_only)
            await self.sender.send(events.records_created(
                plan.linkedid, now, created, phone=plan.phone, source=plan.source, responsible=plan.responsible,
                pipeline=plan.pipeline if plan.mode is CrmMode.SIMPLE else None))
            return LedgerUpdate(created=created)
        if isinstance(command, RecordOffer):
            offer = command.offer
            await self.sender.send(events.call_started(offer.linkedid, now, offer.direction, offer.line, offer.phone,
                                                       offer.employees))
            return NOTHING_LEARNED
        if isinstance(command, LogCall):
            existing = None if ledger.logged is None else ledger.logged.value == "partial"
            if not replaces(existing, command.report):
                return NOTHING_LEARNED
            entity = ledger.entity or command.record.entity
            if entity is None and command.look_up is not None:  # a known client's call (R12): on its record
                # no call waits on this one: the receiver has the event's own time limit, not the call's
                known = await self.sender.lookup(command.look_up)
                entity = None if known is None else known.entity
            record = command.record if entity is None else _on(command, entity)
            await self.sender.send(events.call_ended(record))
            return LedgerUpdate(logged=command.report)
        if isinstance(command, CallCardChange):  # Bitrix24's own call card: no webhook event
            return NOTHING_LEARNED
        return await self._responsible(command, ledger, now)

    async def _responsible(self, command: ChangeResponsible, ledger: CallLedger, now: datetime) -> LedgerUpdate:
        if ledger.created is None:
            return NOTHING_LEARNED
        await self.sender.send(events.responsible_changed(command.linkedid, now, ledger.created.all,
                                                          command.employee, command.transfer))
        return NOTHING_LEARNED


def _on(command: LogCall, entity: EntityRef) -> CallRecord:
    return replace(command.record, entity=entity)


def _records(linkedid: str, mode: CrmMode, create_with: CreateWith, *, contact_only: bool = False) -> CreatedRecords:
    ident = zlib.crc32(linkedid.encode())
    if contact_only:  # the call window's "create contact": the receiver creates one contact
        contact = EntityRef(EntityType.CONTACT, ident)
        return CreatedRecords(contact, contact=contact)
    lead = EntityRef(EntityType.LEAD, ident)
    if mode is CrmMode.CLASSIC:
        return CreatedRecords(lead)
    partner = EntityRef(EntityType.COMPANY if create_with is CreateWith.COMPANY else EntityType.CONTACT, ident)
    return CreatedRecords(lead, deal=EntityRef(EntityType.DEAL, ident),
                          contact=partner if partner.type is EntityType.CONTACT else None,
                          company=partner if partner.type is EntityType.COMPANY else None)
