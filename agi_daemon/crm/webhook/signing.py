"""The signature every request carries, and its check (what a receiver does).

    X-Agi-Daemon-Timestamp: 1767225600
    X-Agi-Daemon-Signature: sha256=HEX(HMAC-SHA256(secret, timestamp + "." + body))

For the lookup (a GET), `body` is the query string as sent ("phone=%2B33612000001").
"""
from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Agi-Daemon-Timestamp"
SIGNATURE_HEADER = "X-Agi-Daemon-Signature"
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    stamp = str(timestamp)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, stamp, body)}


def verify(secret: str, timestamp: str, body: bytes, given: str, now: float,
           tolerance_seconds: int = TOLERANCE_SECONDS) -> bool:
    """True when `given` signs this body and the timestamp is within `tolerance_seconds` of
    `now` (an old signed request replayed later is refused)."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), given)
