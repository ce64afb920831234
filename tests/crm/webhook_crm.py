"""An in-test webhook receiver that acts as a small CRM (aiohttp on 127.0.0.1, port 0).

It does what contrib/webhook_receiver.py tells an integrator to do with the events: it
verifies each signature (401 when wrong), keeps one event per `id` (the idempotency key: an
event sent again is acknowledged and changes nothing, except `call.ended`, whose last body
under that id is the call's best report), and turns them into what a CRM holds:
- `records.created`: the records, with the phone, source, responsible, pipeline (deals) and
  the call that created them; in simple mode the lead is converted at once;
- `responsible.changed`: the listed records get the new responsible;
- `call.ended`: the call log entry of the call.
`GET /lookup?phone=E164` answers the known client of a number (a seeded one, or a record a
call created): contact first, then company, then an unconverted lead.

It fails on demand: `answers` (the next POSTs answer these statuses), `refuse_connections`.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from aiohttp import web

from agi_daemon.crm.webhook import signing
from tests.fakes.http_server import InTestHttpServer

SECRET = "w3bh00k-crm-hm4c"
LOOKUP_ORDER = ("contact", "company", "lead")


class WebhookCrmServer(InTestHttpServer):
    shutdown_timeout = 0.2

    def __init__(self, secret: str = SECRET) -> None:
        super().__init__()
        self.secret = secret
        self.events: dict[str, dict[str, Any]] = {}  # event id -> the last event received under it
        self.received: list[dict[str, Any]] = []  # every POST, in order (repeats too)
        self.records: dict[str, dict[str, Any]] = {}  # "lead:12" -> the record
        self.calls: dict[str, dict[str, Any]] = {}  # linkedid -> the call.ended data
        self.answers: list[int] = []
        self.bad_signatures = 0
        self.lookup_delay = 0.0  # seconds the lookup takes to answer
        self._seeded = itertools.count(900_001)  # ids of the records seeded by a test, apart from the daemon's

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/events", self._event)
        app.router.add_get("/lookup", self._lookup)

    @property
    def url(self) -> str:
        return f"{self.address}/events"

    @property
    def lookup_url(self) -> str:
        return f"{self.address}/lookup"

    @property
    def requests(self) -> int:
        return len(self.received)

    # ---- what a test sets up ------------------------------------------------------------

    def add_record(self, kind: str, name: str, phone: str, responsible: str | None) -> str:
        """A client the CRM knew before any call: returns its reference ("contact:900001")."""
        ref = f"{kind}:{next(self._seeded)}"
        self.records[ref] = {"type": kind, "name": name, "phones": [phone], "responsible": responsible,
                             "source": None, "status": "NEW" if kind == "lead" else None, "created_by_call": None}
        return ref

    # ---- HTTP ---------------------------------------------------------------------------

    async def _event(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not signing.verify(self.secret, request.headers.get(signing.TIMESTAMP_HEADER, ""), body,
                              request.headers.get(signing.SIGNATURE_HEADER, ""), time.time()):
            self.bad_signatures += 1
            return web.Response(status=401)
        event = json.loads(body)
        self.received.append(event)
        if self.answers:
            return web.Response(status=self.answers.pop(0), text="not now")
        first = event["id"] not in self.events
        self.events[event["id"]] = event
        if event["type"] == "call.ended":  # the last body under the id is the call's best report
            self.calls[event["linkedid"]] = event["data"]
        elif first:
            self._apply(event)
        return web.Response(status=204)

    def _apply(self, event: dict[str, Any]) -> None:
        data = event["data"]
        if event["type"] == "records.created":
            kinds = {record["type"] for record in data["records"]}
            for record in data["records"]:
                ref = f"{record['type']}:{record['id']}"
                entry = {"type": record["type"], "name": f"Call from {data['phone']}", "responsible": data["responsible"],
                         "source": data["source"], "created_by_call": event["linkedid"],
                         "phones": [] if record["type"] == "deal" else [data["phone"]],
                         "status": ("CONVERTED" if "deal" in kinds else "NEW") if record["type"] == "lead" else None}
                if record["type"] == "deal":
                    entry["pipeline"] = data["pipeline"]
                    for partner in ("contact", "company"):
                        entry[partner] = next((f"{r['type']}:{r['id']}" for r in data["records"] if r["type"] == partner),
                                              None)
                self.records[ref] = entry
        elif event["type"] == "responsible.changed":
            for record in data["records"]:
                self.records[f"{record['type']}:{record['id']}"]["responsible"] = data["responsible"]

    async def _lookup(self, request: web.Request) -> web.Response:
        if not signing.verify(self.secret, request.headers.get(signing.TIMESTAMP_HEADER, ""),
                              request.query_string.encode(), request.headers.get(signing.SIGNATURE_HEADER, ""),
                              time.time()):
            return web.Response(status=401)
        phone = request.query["phone"]
        await asyncio.sleep(self.lookup_delay)
        for kind in LOOKUP_ORDER:
            for ref, record in self.records.items():
                if record["type"] == kind and phone in record["phones"] and record["status"] != "CONVERTED":
                    return web.json_response({"found": True, "entity": ref, "responsible": record["responsible"],
                                              "name": record["name"]})
        return web.json_response({"found": False})
