"""The outbox's commands as JSON, the form they are stored in until delivered, and back."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from ..core.commands import (
    CallCardChange, CallReport, ChangeResponsible, CreateCallRecords, CrmCommand, LogCall, RecordOffer,
)
from ..core.model import (
    CallRecord, CreatedRecords, CreateWith, CrmMode, Direction, Disposition, EntityRef, Offer, RecordPlan, Transfer,
    TransferKind,
)

Json = dict[str, Any]


def kind_of(command: CrmCommand) -> str:
    return {
        CreateCallRecords: "create_records",
        RecordOffer: "offer",
        LogCall: "log_call",
        ChangeResponsible: "change_responsible",
        CallCardChange: "call_card",
    }[type(command)]


def command_json(command: CrmCommand) -> Json:
    if isinstance(command, CreateCallRecords):
        plan = command.plan
        return {
            "mode": plan.mode.value, "phone": plan.phone, "name": plan.name, "source": plan.source,
            "responsible": plan.responsible, "linkedid": plan.linkedid, "line": plan.line,
            "direction": plan.direction.value, "pipeline": plan.pipeline, "create_with": plan.create_with.value,
            "contact_only": plan.contact_only,
        }
    if isinstance(command, RecordOffer):
        offer = command.offer
        return {
            "linkedid": offer.linkedid, "direction": offer.direction.value, "line": offer.line,
            "phone": offer.phone, "employees": list(offer.employees), "created_at": offer.created_at.isoformat(),
        }
    if isinstance(command, LogCall):
        return {"record": call_json(command.record), "report": command.report.value, "look_up": command.look_up}
    if isinstance(command, CallCardChange):
        return {"linkedid": command.linkedid, "phone": command.phone, "direction": command.direction.value,
                "line": command.line, "employees": list(command.employees), "show": command.show}
    return {"linkedid": command.linkedid, "phone": command.phone, "employee": command.employee,
            "transfer": command.transfer}


def command_from_json(kind: str, data: Json) -> CrmCommand:
    if kind == "create_records":
        return CreateCallRecords(RecordPlan(
            mode=CrmMode(data["mode"]), phone=data["phone"], name=data["name"], source=data["source"],
            responsible=data["responsible"], linkedid=data["linkedid"], line=data["line"],
            direction=Direction(data["direction"]), pipeline=data["pipeline"],
            create_with=CreateWith(data["create_with"]), contact_only=bool(data.get("contact_only", False)),
        ))
    if kind == "offer":
        return RecordOffer(Offer(data["linkedid"], Direction(data["direction"]), data["line"], data["phone"],
                                 tuple(data["employees"]), datetime.fromisoformat(data["created_at"])))
    if kind == "log_call":
        return LogCall(call_from_json(data["record"]), CallReport(data["report"]), data["look_up"])
    if kind == "call_card":
        return CallCardChange(data["linkedid"], data["phone"], Direction(data["direction"]), data["line"],
                              tuple(data["employees"]), bool(data["show"]))
    if kind == "change_responsible":
        return ChangeResponsible(data["linkedid"], data["phone"], data["employee"], int(data["transfer"]))
    raise ValueError(f"unknown outbox command {kind!r}")


def call_json(record: CallRecord) -> Json:
    return {
        "linkedid": record.linkedid, "direction": record.direction.value, "line": record.line,
        "number": record.number, "disposition": record.disposition.value,
        "started_at": record.started_at.isoformat(), "ended_at": record.ended_at.isoformat(),
        "answered_at": None if record.answered_at is None else record.answered_at.isoformat(),
        "answered_by": record.answered_by, "employees": list(record.employees),
        "ring_seconds": record.ring_seconds, "talk_seconds": record.talk_seconds,
        "transfers": [{"from": t.from_employee, "to": t.to_employee, "kind": t.kind.value} for t in record.transfers],
        "entity": None if record.entity is None else str(record.entity), "partial": record.partial,
    }


def call_from_json(data: Json) -> CallRecord:
    answered_at = data["answered_at"]
    return CallRecord(
        linkedid=data["linkedid"], direction=Direction(data["direction"]), line=data["line"],
        number=data["number"], disposition=Disposition(data["disposition"]),
        started_at=datetime.fromisoformat(data["started_at"]), ended_at=datetime.fromisoformat(data["ended_at"]),
        answered_at=None if answered_at is None else datetime.fromisoformat(answered_at),
        answered_by=data["answered_by"], employees=tuple(data["employees"]),
        ring_seconds=float(data["ring_seconds"]), talk_seconds=float(data["talk_seconds"]),
        transfers=tuple(Transfer(t["from"], t["to"], TransferKind(t["kind"])) for t in data["transfers"]),
        entity=None if data["entity"] is None else EntityRef.parse(data["entity"]), partial=bool(data["partial"]),
    )


def refs_json(records: CreatedRecords | None) -> list[str] | None:
    return None if records is None else [str(ref) for ref in records.all]


def refs_from_json(refs: list[str] | None) -> CreatedRecords | None:
    if not refs:
        return None
    parsed = [EntityRef.parse(ref) for ref in refs]
    by_type = {ref.type.value: ref for ref in parsed}
    # a remote CRM's simple mode creates no lead: the deal stands in its place (see bitrix24/adapter.py)
    # and a contact created alone (the call window's "create contact") in the lead's place too
    return CreatedRecords(lead=by_type.get("lead") or by_type.get("deal") or parsed[0], deal=by_type.get("deal"),
                          contact=by_type.get("contact"), company=by_type.get("company"))
