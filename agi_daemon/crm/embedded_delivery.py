"""Delivering the outbox's commands to the embedded CRM: each command is applied to the
embedded tables in the same transaction that marks it delivered and keeps what it created in
the call's ledger. A crash before the commit leaves the command pending (applied again from
scratch); after it, delivered: never half, never twice.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Connection

from ..core.commands import (
    NOTHING_LEARNED, CallCardChange, CallLedger, CreateCallRecords, CrmCommand, LedgerUpdate, LogCall, RecordOffer,
)
from ..core.model import CreatedRecords, EntityRef
from ..core.phone import masked
from . import embedded, outbox_store

log = logging.getLogger(__name__)


def apply_row(conn: Connection, row_id: int, now: datetime) -> tuple[CrmCommand, LedgerUpdate] | None:
    """Deliver pending outbox row `row_id` to the embedded tables, in this transaction.
    None when the row is not this daemon's to deliver (delivered meanwhile, dropped, being
    delivered by another daemon: `outbox_store.take`)."""
    stored = outbox_store.take(conn, row_id, now)
    if stored is None:
        return None
    known = outbox_store.ledger(conn, stored.command.linkedid)
    learned = apply(conn, stored.command, known)
    outbox_store.learn(conn, known, learned, now)
    outbox_store.delivered(conn, row_id, now)
    return stored.command, learned


def store_and_apply(conn: Connection, command: CrmCommand, now: datetime) -> tuple[CrmCommand, LedgerUpdate] | None:
    """Store `command` as delivered and apply it, in this transaction (the outbox's direct
    path, when nothing waits before it in its lane); None when its key was stored already."""
    if outbox_store.add(conn, command, now, status=outbox_store.DELIVERED) is None:
        return None
    known = outbox_store.ledger(conn, command.linkedid)
    learned = apply(conn, command, known)
    outbox_store.learn(conn, known, learned, now)
    return command, learned


def apply(conn: Connection, command: CrmCommand, known: CallLedger) -> LedgerUpdate:
    if isinstance(command, CreateCallRecords):
        return _create(conn, command, known)
    if isinstance(command, RecordOffer):
        embedded.store_offer(conn, command.offer)
        return NOTHING_LEARNED
    if isinstance(command, LogCall):
        entity = known.entity or command.record.entity
        if entity is None and command.look_up is not None:
            entity = _client_of(conn, command.look_up)
        embedded.store_call(conn, command.record, command.report, entity)
        return NOTHING_LEARNED
    if isinstance(command, CallCardChange):  # a remote CRM's own call card: the embedded CRM has none
        return NOTHING_LEARNED
    if known.created is not None:  # ChangeResponsible of records this call created
        embedded.assign(conn, known.created.all, command.employee)
        log.info("call %s: %s now responsible for %s", command.linkedid, command.employee,
                 ", ".join(map(str, known.created.all)))
    return NOTHING_LEARNED


def _create(conn: Connection, command: CreateCallRecords, known: CallLedger) -> LedgerUpdate:
    """Look before create: the records of a number that became known since the call was routed
    (another call from the same new number created them first, an admin added the contact)
    are joined, not created again; records this very call created already (stored before its
    ledger kept them) are its own. A number no record has gets its records now."""
    plan = command.plan
    if known.created is not None or known.joined is not None:
        return NOTHING_LEARNED
    embedded.lock_number(conn, plan.phone)
    found = _known_client(conn, plan.phone)
    if found is not None:
        client, creator, records = found
        if creator == plan.linkedid and records is not None:
            return LedgerUpdate(created=records)
        log.info("call %s from %s: joins %s, created meanwhile", plan.linkedid, masked(plan.phone), client)
        embedded.attach_call(conn, plan.linkedid, client)
        return LedgerUpdate(joined=client)
    records = embedded.insert_records(conn, plan)
    log.info("call %s from %s created %s", plan.linkedid, masked(plan.phone), " ".join(map(str, records.all)))
    embedded.attach_call(conn, plan.linkedid, records.primary)  # a call log delivered first (R12)
    return LedgerUpdate(created=records)


def _client_of(conn: Connection, phone: str) -> EntityRef | None:
    """The known client's record to log a call on (see _known_client)."""
    found = _known_client(conn, phone)
    return None if found is None else found[0]


def _known_client(conn: Connection, phone: str) -> tuple[EntityRef, str | None, CreatedRecords | None] | None:
    """The known client's record of `phone`: what the lookup finds; when a call created it,
    that call's primary record (the deal in simple mode). With it, the call that created it
    and the records that call created (None, None when no call did). None: a number no
    record has."""
    match = embedded.lookup_in(conn, phone)
    if match is None:
        return None
    creator = embedded.creator_call(conn, match)
    if creator is not None:
        records = embedded.records_of_call(conn, creator, phone)
        if records is not None:
            return records.primary, creator, records
    return match, None, None
