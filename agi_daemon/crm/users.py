"""The web call window's logins: one password per employee, stored as a scrypt hash.

    hashed = hash_password("s3cret")            # "scrypt$16384$8$1$<salt>$<hash>"
    verify_password("s3cret", hashed)           # True

Hashing costs tens of milliseconds of CPU on purpose: callers on the event loop run it in a
thread. The employees themselves are those of the YAML file; only their hashes are stored.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection, select

from ..core.ports import CrmRejected
from .tables import web_users

_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32
MIN_LENGTH = 8
# Checked when an employee has no password, so that an unknown name costs the same time.
_NO_PASSWORD = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    if len(password) < MIN_LENGTH:
        raise CrmRejected(f"a password needs at least {MIN_LENGTH} characters")
    salt = salt or os.urandom(_SALT_BYTES)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_KEY_BYTES)
    return "$".join(("scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(key)))


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def stamp(password_hash: str) -> str:
    """What tells one setting of a password from the next (each hash has its own salt), without
    keeping the hash itself in a session."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class WebUsers:
    """Password hashes in the embedded CRM's database (table web_users)."""

    def __init__(self, crm) -> None:  # an EmbeddedCrm
        self._crm = crm

    async def set_password_hash(self, employee: str, password_hash: str) -> None:
        values = {"employee": employee, "password_hash": password_hash, "updated_at": datetime.now(UTC)}

        def store(conn: Connection) -> None:
            updated = conn.execute(web_users.update().where(web_users.c.employee == employee).values(**values))
            if updated.rowcount == 0:
                conn.execute(web_users.insert().values(**values))

        await self._crm.transaction("set a password", store, write=True)

    async def verify(self, employee: str, password: str) -> str | None:
        """When `password` is the employee's, its stamp (`stamp`); None otherwise. Costs the
        same scrypt time whether the employee has a password or not (off the event loop)."""
        stored = await self.password_hash(employee)
        ok = await asyncio.to_thread(verify_password, password, stored or _NO_PASSWORD)
        return stamp(stored) if stored is not None and ok else None

    async def stamps(self, employees: Iterable[str]) -> dict[str, str]:
        """The stamp of each of `employees`' current password (those without one are left out):
        a web session opened with another stamp is over (web/auth.py)."""
        wanted = sorted(set(employees))

        def read(conn: Connection) -> dict[str, str]:
            rows = conn.execute(select(web_users.c.employee, web_users.c.password_hash)
                                .where(web_users.c.employee.in_(wanted)))
            return {employee: stamp(hashed) for employee, hashed in rows}

        return await self._crm.transaction("read the passwords' stamps", read, write=False) if wanted else {}

    async def password_hash(self, employee: str) -> str | None:
        def read(conn: Connection) -> str | None:
            return conn.execute(select(web_users.c.password_hash).where(web_users.c.employee == employee)).scalar()

        return await self._crm.transaction("read a password", read, write=False)
