"""What the CRM holds, seen the same way whatever the adapter: the test side of the CRM contract.

One view per adapter, each reading that CRM's own state, never the daemon's:
- `EmbeddedHolds`: the embedded tables (the daemon's store, `crm list --json`);
- `PortalHolds`: the in-test Bitrix24 portal's records and registered calls;
- `WebhookHolds`: what the in-test webhook CRM made of the events it received.

Each answers `list_records(kind)` with the shapes of `agi-daemon crm list --json` (records:
id, type, name, phones, responsible (employee id), source, status (leads), created_by_call,
and for deals pipeline, contact, company; calls: linkedid, direction, line, number, entity,
disposition, answered_by, talk_seconds, ...) and seeds a known client with `add_record`.
`call_fields` says which call-log fields that CRM keeps at all: a Bitrix24 call is finished
with who took it, its duration and status, nothing of its rings or transfers.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

from agi_daemon.crm.embedded import EmbeddedCrm
from tests.crm.bitrix24_portal import Bitrix24Portal
from tests.crm.webhook_crm import WebhookCrmServer

Json = dict[str, Any]
KINDS = {"leads": "lead", "contacts": "contact", "companies": "company", "deals": "deal"}
ALL_CALL_FIELDS = frozenset({"linkedid", "direction", "line", "number", "entity", "disposition", "answered_by",
                             "talk_seconds", "ring_seconds", "employees", "transfers"})
# the test PBX on the in-test portal (tests/daemon_harness.py write_config): alice and bob are
# portal users 11 and 12, crm.simple pipelines general and b2b are deal categories 0 and 3
PORTAL_USERS = {11: "alice", 12: "bob"}
PIPELINE_IDS = {"general": 0, "b2b": 3}
PORTAL_CALL_FIELDS = frozenset({"linkedid", "direction", "line", "number", "entity", "disposition", "answered_by",
                                "talk_seconds"})


@contextlib.asynccontextmanager
async def running_portal() -> AsyncIterator[Bitrix24Portal]:
    """The in-test portal of the test PBX: alice and bob are users 11 and 12 (internal phones
    101 and 102). At the end, no request broke the REST documentation and none met
    QUERY_LIMIT_EXCEEDED (the portal's own bucket): the checks every Bitrix24 test makes."""
    portal = await Bitrix24Portal().start()
    portal.add_user(11, "Alice Martin", inner_phone="101")
    portal.add_user(12, "Bob Durand", inner_phone="102")
    try:
        yield portal
    finally:
        await portal.stop()
    assert portal.violations == []  # every request had the shape the REST documentation gives
    assert portal.limit_hits == 0  # never QUERY_LIMIT_EXCEEDED in steady state


class CrmHolds(Protocol):
    adapter: str
    call_fields: frozenset[str]
    store: EmbeddedCrm | None  # the daemon's own store (outbox, ledger; the embedded CRM's records)

    @property
    def requests(self) -> int | None:
        """Requests the daemon sent to a remote CRM so far; None for the embedded CRM (no wire)."""

    async def list_records(self, kind: str) -> list[Json]:
        """Every record of `kind` (leads, contacts, companies, deals), every logged call
        (calls) or every offer to create a record (offers: linkedid, phone, line)."""

    async def add_record(self, kind: str, name: str, phone: str, responsible: str | None) -> Json:
        """Seed a client the CRM knew before the call; returns it as list_records shows it."""


async def logged(holds: CrmHolds, linkedid: str) -> list[Json]:
    """The call log entries of one call."""
    return [call for call in await holds.list_records("calls") if call["linkedid"] == linkedid]


class EmbeddedHolds:
    adapter = "embedded"
    call_fields = ALL_CALL_FIELDS

    def __init__(self, store: EmbeddedCrm) -> None:
        self.store = store

    @property
    def requests(self) -> int | None:
        return None

    async def list_records(self, kind: str) -> list[Json]:
        return await self.store.list_records(kind)  # type: ignore[arg-type]

    async def add_record(self, kind: str, name: str, phone: str, responsible: str | None) -> Json:
        return await self.store.add_record(kind, name, phone, responsible)  # type: ignore[arg-type]


class PortalHolds:
    """`users`: portal user id -> employee id (the employees' crm_user); `pipelines`: pipeline
    name -> deal CATEGORY_ID (crm.bitrix24.pipelines)."""

    adapter = "bitrix24"
    call_fields = PORTAL_CALL_FIELDS
    DISPOSITIONS = {"200": "answered", "304": "missed", "603-S": "missed", "486": "busy"}

    def __init__(self, portal: Bitrix24Portal, users: dict[int, str] = PORTAL_USERS,
                 pipelines: dict[str, int] = PIPELINE_IDS, *, store: EmbeddedCrm | None = None) -> None:
        self.portal = portal
        self.users = users
        self.pipelines = {category: name for name, category in pipelines.items()}
        self.store = store

    @property
    def requests(self) -> int | None:
        return self.portal.requests

    async def list_records(self, kind: str) -> list[Json]:
        if kind == "calls":
            return [self._call(call) for call in self.portal.calls.values() if call.finished is not None]
        if kind == "offers":
            return [{"linkedid": call.params.get("EXTERNAL_CALL_ID"), "phone": call.params.get("PHONE_NUMBER"),
                     "line": call.params.get("LINE_NUMBER")}
                    for call in self.portal.calls.values() if str(call.params.get("CRM_CREATE")) == "0"]
        type_ = KINDS[kind]
        return [self._record(type_, int(ident), fields) for ident, fields in sorted(self.portal.records[type_].items())]

    async def add_record(self, kind: str, name: str, phone: str, responsible: str | None) -> Json:
        user = next((ident for ident, employee in self.users.items() if employee == responsible), None)
        fields: Json = {"NAME" if kind == "contact" else "TITLE": name,
                        "PHONE": [{"VALUE": phone, "VALUE_TYPE": "WORK"}]}
        if user is not None:
            fields["ASSIGNED_BY_ID"] = user
        ident = self.portal.add_record(kind, fields)
        return self._record(kind, ident, self.portal.records[kind][ident])

    def _employee(self, user: Any) -> str | None:
        return None if user in (None, "") else self.users.get(int(user), f"portal user {user}")

    def _record(self, type_: str, ident: int, fields: Json) -> Json:
        origin = str(fields.get("ORIGIN_ID") or "")
        record: Json = {
            "id": ident, "type": type_, "name": fields.get("NAME") or fields.get("TITLE"),
            "phones": [phone["VALUE"] for phone in fields.get("PHONE", [])],
            "responsible": self._employee(fields.get("ASSIGNED_BY_ID")),
            "source": fields.get("SOURCE_ID"),
            # the daemon's records carry ORIGIN_ID = "<linkedid>/records" (the command's key)
            "created_by_call": origin.removesuffix("/records") if origin.endswith("/records") else None,
        }
        if type_ == "lead":
            record["status"] = fields.get("STATUS_ID") or "NEW"  # a lead added without STATUS_ID is NEW on a portal
        if type_ == "deal":
            record["pipeline"] = self.pipelines.get(int(fields["CATEGORY_ID"]))
            for partner in ("contact", "company"):
                linked = fields.get(f"{partner.upper()}_ID")
                record[partner] = f"{partner}:{linked}" if linked else None
        return record

    def _call(self, call: Any) -> Json:
        params, finished = call.params, call.finished
        disposition = self.DISPOSITIONS.get(str(finished["STATUS_CODE"]), "failed")
        entity = params.get("CRM_ENTITY_TYPE")
        # the record the call is logged on: the one it was registered on, else the first one its
        # activity was bound to after the finish (a record created during or after an offer call)
        bound = self.portal.bindings_of(call.call_id)
        logged_on = f"{entity.lower()}:{int(params['CRM_ENTITY_ID'])}" if entity else (
            f"{bound[0][0]}:{bound[0][1]}" if bound else None)
        return {
            "linkedid": params.get("EXTERNAL_CALL_ID"),
            "direction": {"1": "outgoing", "2": "incoming"}.get(str(params.get("TYPE")), "other"),
            "line": params.get("LINE_NUMBER"), "number": params.get("PHONE_NUMBER"),
            "entity": logged_on,
            "disposition": disposition,
            # who took the call: the user it was finished for (a call nobody took is finished
            # for the employee rung first: the portal needs a user)
            "answered_by": self._employee(finished["USER_ID"]) if disposition == "answered" else None,
            "talk_seconds": float(finished["DURATION"]),
            "registrations": call.registrations,
        }


class WebhookHolds:
    adapter = "webhook"
    call_fields = ALL_CALL_FIELDS

    def __init__(self, server: WebhookCrmServer, *, store: EmbeddedCrm | None = None) -> None:
        self.server = server
        self.store = store

    @property
    def requests(self) -> int | None:
        return self.server.requests

    async def list_records(self, kind: str) -> list[Json]:
        if kind == "calls":
            return [{"linkedid": linkedid, **{key: data.get(key) for key in ALL_CALL_FIELDS - {"linkedid"}}}
                    for linkedid, data in self.server.calls.items()]
        if kind == "offers":  # a call that started and created nothing: the receiver's window offers to create
            created = {event["linkedid"] for event in self.server.events.values() if event["type"] == "records.created"}
            return [{"linkedid": event["linkedid"], "phone": event["data"]["number"], "line": event["data"]["line"]}
                    for event in self.server.events.values()
                    if event["type"] == "call.started" and event["linkedid"] not in created]
        type_ = KINDS[kind]
        records = [(int(ref.partition(":")[2]), record) for ref, record in self.server.records.items()
                   if record["type"] == type_]
        return [self._record(ident, record) for ident, record in sorted(records, key=lambda item: item[0])]

    async def add_record(self, kind: str, name: str, phone: str, responsible: str | None) -> Json:
        ref = self.server.add_record(kind, name, phone, responsible)
        return self._record(int(ref.partition(":")[2]), self.server.records[ref])

    @staticmethod
    def _record(ident: int, record: Json) -> Json:
        """As `crm list --json`: `status` for leads only."""
        return {"id": ident, **{key: value for key, value in record.items() if key != "status" or value is not None}}
