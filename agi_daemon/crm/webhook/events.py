"""The events the webhook CRM receives, as values: each has a `version`, a stable `id` (the
idempotency key: the same event sent again has the same id), the call's `linkedid`, `at`
(ISO 8601, UTC) and a typed `data` object. docs/webhook.md documents each one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from agi_daemon.core.model import CallRecord, CreatedRecords, Direction, EntityRef

VERSION = 1


class EventType(StrEnum):
    CALL_STARTED = "call.started"
    CALL_ENDED = "call.ended"
    RECORDS_CREATED = "records.created"
    RESPONSIBLE_CHANGED = "responsible.changed"


@dataclass(frozen=True)
class WebhookEvent:
    type: EventType
    id: str
    linkedid: str
    at: datetime
    data: dict[str, Any]

    def body(self) -> bytes:
        """The JSON body, compact and with sorted keys: the same event gives the same bytes."""
        document = {"version": VERSION, "type": self.type.value, "id": self.id, "linkedid": self.linkedid,
                    "at": _iso(self.at), "data": self.data}
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _refs(refs: tuple[EntityRef, ...]) -> list[dict[str, Any]]:
    return [{"type": ref.type.value, "id": ref.id} for ref in refs]


def call_started(linkedid: str, at: datetime, direction: Direction, line: str, number: str,
                 employees: tuple[str, ...]) -> WebhookEvent:
    return WebhookEvent(EventType.CALL_STARTED, f"{linkedid}/call.started", linkedid, at,
                        {"direction": direction.value, "line": line, "number": number, "employees": list(employees)})


def call_ended(record: CallRecord) -> WebhookEvent:
    data = {
        "direction": record.direction.value, "line": record.line, "number": record.number,
        "disposition": record.disposition.value, "answered_by": record.answered_by,
        "employees": list(record.employees), "started_at": _iso(record.started_at),
        "answered_at": _iso(record.answered_at), "ended_at": _iso(record.ended_at),
        "ring_seconds": round(record.ring_seconds, 3), "talk_seconds": round(record.talk_seconds, 3),
        "transfers": [{"from": t.from_employee, "to": t.to_employee, "kind": t.kind.value} for t in record.transfers],
        "entity": str(record.entity) if record.entity else None,
    }
    return WebhookEvent(EventType.CALL_ENDED, f"{record.linkedid}/call.ended", record.linkedid, record.ended_at, data)


def records_created(linkedid: str, at: datetime, created: CreatedRecords, *, phone: str, source: str,
                    responsible: str | None, pipeline: str | None = None) -> WebhookEvent:
    return WebhookEvent(EventType.RECORDS_CREATED, f"{linkedid}/records.created", linkedid, at,
                        {"records": _refs(created.all), "primary": str(created.primary), "phone": phone,
                         "source": source, "responsible": responsible, "pipeline": pipeline})


def responsible_changed(linkedid: str, at: datetime, records: tuple[EntityRef, ...], responsible: str,
                        transfer: int) -> WebhookEvent:
    """`previous` stays null in version 1 (docs/webhook.md): the daemon does not keep who held
    the records; the receiver does. `transfer`, the transfer's number within the call, is in
    the id: a call sent back to an employee it was with before is a new event, not a repeat."""
    return WebhookEvent(EventType.RESPONSIBLE_CHANGED, f"{linkedid}/responsible.changed/{transfer}/{responsible}",
                        linkedid, at, {"records": _refs(records), "responsible": responsible, "previous": None})
