#!/usr/bin/env python3
"""A small receiver for agi-daemon's signed webhook events (Python 3 standard library only).

    AGI_DAEMON_WEBHOOK_SECRET=... python3 contrib/webhook_receiver.py --listen 127.0.0.1:8099 \
        [--contacts contacts.json]

- POST (any path): checks X-Agi-Daemon-Signature against the secret and the timestamp (five
  minutes of tolerance), then prints the event as one JSON line on stdout. An event whose `id`
  was already received is acknowledged again and not printed twice. Answers 204, or 401 for a
  bad signature, 400 for a body that is not an event.
- GET /lookup?phone=E164 (when --contacts is given: a JSON object phone -> {"entity":
  "contact:12", "responsible": "alice", "name": "..."}): answers {"found": ...}.

The first line printed is `listening on HOST:PORT` (port 0 picks a free port).
Start from here to feed your CRM: replace `handle_event`.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOLERANCE_SECONDS = 300


def valid_signature(secret: str, timestamp: str, body: bytes, given: str) -> bool:
    """HMAC-SHA256(secret, timestamp + "." + body), hex, prefixed "sha256=", compared in
    constant time; the timestamp must be within five minutes of now."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


def handle_event(event: dict) -> None:
    """What to do with a verified event: here, print it."""
    print(json.dumps(event, sort_keys=True), flush=True)


class Receiver(BaseHTTPRequestHandler):
    secret = ""
    contacts: dict = {}
    seen: set = set()
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not valid_signature(self.secret, self.headers.get("X-Agi-Daemon-Timestamp", ""), body,
                               self.headers.get("X-Agi-Daemon-Signature", "")):
            return self._answer(401, {"error": "bad signature"})
        try:
            event = json.loads(body)
            event_id = event["id"]
        except (ValueError, KeyError, TypeError):
            return self._answer(400, {"error": "not an event"})
        with self.lock:
            first = event_id not in self.seen
            self.seen.add(event_id)
        if first:
            handle_event(event)
        self._answer(204, None)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.rstrip("/") != "/lookup":
            return self._answer(404, {"error": "not found"})
        if not valid_signature(self.secret, self.headers.get("X-Agi-Daemon-Timestamp", ""), url.query.encode(),
                               self.headers.get("X-Agi-Daemon-Signature", "")):
            return self._answer(401, {"error": "bad signature"})
        phone = parse_qs(url.query).get("phone", [""])[0]
        contact = self.contacts.get(phone)
        self._answer(200, {"found": True, **contact} if contact else {"found": False})

    def _answer(self, status: int, document: dict | None) -> None:
        body = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep stdout for events
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8099", help="HOST:PORT (port 0: any free port)")
    parser.add_argument("--contacts", help="JSON file: phone -> {entity, responsible, name}, for GET /lookup")
    args = parser.parse_args()
    secret = os.environ.get("AGI_DAEMON_WEBHOOK_SECRET")
    if not secret:
        parser.error("set AGI_DAEMON_WEBHOOK_SECRET to the daemon's crm.webhook.secret")
    Receiver.secret = secret
    if args.contacts:
        with open(args.contacts, encoding="utf-8") as file:
            Receiver.contacts = json.load(file)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Receiver)
    print(f"listening on {host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
