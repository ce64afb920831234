"""contrib/webhook_receiver.py, the receiver docs/webhook.md offers, run as an admin would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agi_daemon.core.crm_errors import RemoteCrmRejected
from agi_daemon.core.model import Direction, EntityRef, EntityType
from agi_daemon.crm.webhook import events
from agi_daemon.crm.webhook.sender import WebhookSender

LEAD_7 = EntityRef(EntityType.LEAD, 7)

SCRIPT = Path(__file__).resolve().parents[2] / "contrib" / "webhook_receiver.py"
SECRET = "r3c31v3r-k3y"


@pytest.fixture
def receiver(tmp_path):
    contacts = tmp_path / "contacts.json"
    contacts.write_text(json.dumps({"+33612000001": {"entity": "contact:12", "responsible": "alice", "name": "Client"}}))
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--listen", "127.0.0.1:0", "--contacts", str(contacts)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "AGI_DAEMON_WEBHOOK_SECRET": SECRET})
    try:
        first = process.stdout.readline()
        assert first.startswith("listening on 127.0.0.1:"), first
        yield process, f"http://{first.split()[-1]}"
    finally:
        process.terminate()
        process.wait(timeout=5)


async def test_receiver_prints_a_signed_event_once_and_refuses_a_bad_signature(receiver):
    process, address = receiver
    event = events.call_started("1700000000.9", datetime.now(UTC), Direction.INCOMING, "+33184880000",
                                "+33612000001", ("alice",))
    sender = WebhookSender(f"{address}/events", SECRET, lookup_url=f"{address}/lookup", timeout_seconds=2)
    forger = WebhookSender(f"{address}/events", "not-the-key", timeout_seconds=2)
    await sender.open()
    await forger.open()
    try:
        await sender.send(event)
        await sender.send(event)  # delivered again after a lost acknowledgement: printed once
        with pytest.raises(RemoteCrmRejected, match="HTTP 401"):
            await forger.send(events.responsible_changed("1700000000.9", datetime.now(UTC), (LEAD_7,), "mallory", 1))
        match = await sender.lookup("+33612000001", deadline_seconds=2)
        await sender.send(events.responsible_changed("1700000000.9", datetime.now(UTC), (LEAD_7,), "alice", 1))
    finally:
        await sender.close()
        await forger.close()
    printed = [json.loads(process.stdout.readline()) for _ in range(2)]
    assert [(e["type"], e["id"]) for e in printed] == [("call.started", "1700000000.9/call.started"),
                                                      ("responsible.changed", "1700000000.9/responsible.changed/1/alice")]
    assert printed[0]["data"] == {"direction": "incoming", "line": "+33184880000", "number": "+33612000001",
                                  "employees": ["alice"]}
    assert printed[1]["data"] == {"records": [{"type": "lead", "id": 7}], "responsible": "alice", "previous": None}
    assert (str(match.entity), match.responsible) == ("contact:12", "alice")


async def test_a_lookup_url_with_its_own_parameters_is_signed_as_sent(receiver):
    """Function hosts put their key in the URL (`?code=...`): the signed text is the whole
    query as sent, which is what the receiver checks."""
    from tests.crm.test_webhook_sender import lookup_once

    _, address = receiver
    match = await lookup_once(address, "/lookup?code=abc", SECRET)
    assert match is not None and str(match.entity) == "contact:12"
