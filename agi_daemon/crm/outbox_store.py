"""The outbox and the call ledger in the daemon's own database: the SQL, one transaction's
worth per function (each takes the transaction's connection). The worker that delivers
(`agi_daemon.crm.outbox`) and the command line (`agi-daemon outbox`) both go through here.

A row's status: `pending` (waiting for delivery, maybe after failed attempts), `delivered`,
`dead` (a dead letter: the CRM refused it, or it failed too often or too long; `outbox retry`
puts it back), `dropped` (the admin gave up on it with `outbox drop`). Delivered and dropped
rows keep their key, so the same command is never stored or delivered again.

Several daemons may drain one outbox (one per PBX, on one PostgreSQL database). A row is
delivered by whoever takes it first (`take`): its row lock (`FOR UPDATE SKIP LOCKED`: another
daemon holding it is skipped, never waited for), only while it is still pending, only when no
older row of its lane still waits (a lane stays in order across daemons), and only when no
live claim holds it. The embedded delivery applies the row in the transaction that takes it,
so the lock is the claim and dies with the transaction (or the connection of a daemon killed
with -9). A remote delivery leaves that transaction before it sends, so it writes a claim
with a lease (`claimed_by`, `claimed_until`): a daemon that dies while sending leaves a claim
that another takes over once the lease has run out.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, exists, func, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnClause

from ..core.commands import (
    NOTHING_LEARNED, CallLedger, CallReport, CrmCommand, LedgerUpdate, RecordOffer, offer_key, supersedes,
)
from ..core.model import EntityRef
from .command_json import command_from_json, command_json, kind_of, refs_from_json, refs_json
from .embedded import execute_prepared, prepare
from .remote_answer import printable
from .tables import LANE, call_ledger, outbox

PENDING, DELIVERED, DEAD, DROPPED = "pending", "delivered", "dead", "dropped"
SUPERSEDED = "superseded"  # a call report a later, better one made moot before it was delivered
HOLD = "hold"  # in `claimed_by` ("host:hold:pid"): a row held back a grace, not being sent


@dataclass(frozen=True)
class Waiting:
    """A pending row as the worker schedules it."""

    id: int
    lane: str
    created_at: datetime
    attempts: int = 0  # failed attempts so far, this run and earlier ones
    not_before: datetime | None = None  # held back until then (`hold`)


@dataclass(frozen=True)
class Stored:
    """A row loaded for delivery."""

    id: int
    command: CrmCommand
    status: str
    attempts: int
    created_at: datetime


def lane_of(command: CrmCommand) -> str:
    """The command's lane as the outbox stores it (a lane is an order, not a name: two lanes
    cut to the same length are merely delivered one after the other)."""
    return command.lane[:LANE]


def add(conn: Connection, command: CrmCommand, now: datetime, *, status: str = PENDING) -> Waiting | None:
    """Store a command (pending, or already `delivered` when the caller applies it in this
    transaction); None when its key is already stored (nothing changes)."""
    row = execute_prepared(conn, _ADD[conn.dialect.name == "postgresql"], outbox, {
        "key": command.key, "lane": lane_of(command), "linkedid": command.linkedid, "kind": kind_of(command),
        "payload": command_json(command), "status": status, "attempts": 0, "created_at": now,
        "done_at": None if status == PENDING else now,
    }).fetchone()
    return None if row is None else Waiting(row[0], lane_of(command), now)


def hold(conn: Connection, row_id: int, owner: str, until: datetime) -> None:
    """Hold a just stored row back until `until`: a claim of this daemon ("host:hold:pid"),
    which no daemon takes before it runs out; a daemon of this host that died frees it at
    its next start (`claimants`), so the row is then delivered at once."""
    host, _, pid = owner.rpartition(":")
    conn.execute(update(outbox).where(outbox.c.id == row_id)
                 .values(claimed_by=f"{host}:{HOLD}:{pid}"[:64], claimed_until=until))


# `status = 'pending'` written as a constant, not a bound value: the lane index holds pending
# rows only (tables.outbox), and a planner uses such an index only for a statement whose
# condition says so in its text (SQLite always, PostgreSQL once it plans for any value).
PENDING_AS_TEXT: ColumnClause[str] = literal_column(f"'{PENDING}'")


def supersede(conn: Connection, command: CrmCommand, now: datetime) -> list[int]:
    """The held rows of `command`'s call that it makes moot (core.commands.supersedes), marked
    superseded; their ids. A row keeps its hold mark until a daemon takes it for delivery
    (`take` claims it in its own name), so a row still marked was never sent, even when its
    grace is over and its lane waits for an earlier command. A row being sent is left alone:
    the adapter keeps whichever report lands first (or merges them)."""
    rows = conn.execute(
        select(outbox.c.id, outbox.c.kind, outbox.c.payload)
        .where(outbox.c.lane == lane_of(command), outbox.c.status == PENDING_AS_TEXT, outbox.c.linkedid == command.linkedid,
               outbox.c.kind == kind_of(command), outbox.c.claimed_by.like(f"%:{HOLD}:%"))
    ).all()
    moot = [row_id for row_id, kind, payload in rows if supersedes(command, command_from_json(kind, _json(payload)))]
    if moot:
        conn.execute(update(outbox).where(outbox.c.id.in_(moot), outbox.c.status == PENDING)
                     .values(status=SUPERSEDED, done_at=now, claimed_by=None, claimed_until=None,
                             last_error=f"superseded by {command.key}"[:2000]))
    return moot


def waiting(conn: Connection) -> list[Waiting]:
    """Every pending row, oldest first."""
    rows = conn.execute(
        select(outbox.c.id, outbox.c.lane, outbox.c.created_at, outbox.c.attempts)
        .where(outbox.c.status == PENDING).order_by(outbox.c.id)
    )
    return [Waiting(*row) for row in rows]


def load(conn: Connection, row_id: int) -> Stored | None:
    row = conn.execute(
        select(outbox.c.kind, outbox.c.payload, outbox.c.status, outbox.c.attempts, outbox.c.created_at)
        .where(outbox.c.id == row_id)
    ).first()
    if row is None:
        return None
    kind, payload, status, attempts, created_at = row
    return Stored(row_id, command_from_json(kind, payload), status, attempts, created_at)


def take(conn: Connection, row_id: int, now: datetime, *, claim: tuple[str, timedelta] | None = None) -> Stored | None:
    """Pending row `row_id` locked for delivery in this transaction, or None when it is not
    this daemon's to deliver now: delivered or dropped meanwhile, locked or claimed by another
    daemon, or behind an older pending row of its lane. `claim` (owner, lease): also claim the
    row until now + lease, for a delivery that goes on after this transaction."""
    older = outbox.alias("older")
    row = conn.execute(
        select(outbox.c.kind, outbox.c.payload, outbox.c.status, outbox.c.attempts, outbox.c.created_at)
        .where(outbox.c.id == row_id, outbox.c.status == PENDING,
               or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
               ~exists().where(older.c.lane == outbox.c.lane, older.c.status == PENDING_AS_TEXT, older.c.id < outbox.c.id))
        .with_for_update(skip_locked=True, of=outbox)
    ).first()
    if row is None:
        return None
    if claim is not None:
        owner, lease = claim
        conn.execute(update(outbox).where(outbox.c.id == row_id)
                     .values(claimed_by=owner[:64], claimed_until=now + lease))
    kind, payload, status, attempts, created_at = row
    return Stored(row_id, command_from_json(kind, payload), status, attempts, created_at)


def offer(conn: Connection, linkedid: str) -> RecordOffer | None:
    """The offer call `linkedid` made (R3), as stored, or None."""
    row = conn.execute(select(outbox.c.kind, outbox.c.payload).where(outbox.c.key == offer_key(linkedid))).first()
    if row is None:
        return None
    command = command_from_json(row[0], _json(row[1]))
    return command if isinstance(command, RecordOffer) else None


def ledger(conn: Connection, linkedid: str) -> CallLedger:
    return ledger_of(linkedid, execute_prepared(conn, _LEDGER, call_ledger, {"linkedid": linkedid}).fetchone())


def ledger_of(linkedid: str, row: Any) -> CallLedger:
    """The ledger of call `linkedid` from its row (LEDGER_READ's), or empty when None."""
    if row is None:
        return CallLedger(linkedid)
    created, joined, remote_ids, remote_call_id, logged = (_json(row[0]), row[1], _json(row[2]), row[3], row[4])
    return CallLedger(linkedid, refs_from_json(created), None if joined is None else EntityRef.parse(joined),
                      dict(remote_ids or {}), remote_call_id, None if logged is None else CallReport(logged))


def _json(value: Any) -> Any:
    """A JSON column as the driver gave it: text on SQLite's fast path, decoded otherwise."""
    return json.loads(value) if isinstance(value, str) else value


def learn(conn: Connection, known: CallLedger, learned: LedgerUpdate, now: datetime) -> None:
    """Keep what a delivery taught about the call (nothing to write when it taught nothing)."""
    if learned == NOTHING_LEARNED:
        return
    joined = learned.joined or known.joined
    logged = learned.logged or known.logged
    execute_prepared(conn, _LEARN[conn.dialect.name == "postgresql"], call_ledger, {
        "linkedid": known.linkedid,
        "created": refs_json(learned.created or known.created),
        "joined": None if joined is None else str(joined),
        "remote_ids": {**known.remote_ids, **learned.remote_ids} or None,
        "remote_call_id": learned.remote_call_id or known.remote_call_id,
        "logged": None if logged is None else logged.value,
        "updated_at": now,
    })


def _upsert_ledger(dialect: Any) -> Any:
    insert = dialect.insert(call_ledger)
    return insert.on_conflict_do_update(
        index_elements=["linkedid"],
        set_={name: insert.excluded[name] for name in ("created", "joined", "remote_ids", "remote_call_id",
                                                       "logged", "updated_at")},
    )


# The statements of the call path, built once (see embedded.execute_prepared); [0] SQLite, [1] PostgreSQL.
_ADD = tuple(dialect.insert(outbox).on_conflict_do_nothing(index_elements=["key"]).returning(outbox.c.id)
             for dialect in (sqlite, postgresql))
_LEDGER = select(call_ledger.c.created, call_ledger.c.joined, call_ledger.c.remote_ids,
                 call_ledger.c.remote_call_id, call_ledger.c.logged).where(call_ledger.c.linkedid == bindparam("linkedid"))
_LEARN = tuple(_upsert_ledger(dialect) for dialect in (sqlite, postgresql))
# The ledger read outside a transaction (EmbeddedCrm.read_row: on the event loop, on SQLite).
LEDGER_READ = prepare(_LEDGER)


def claimants(conn: Connection, host: str) -> list[str]:
    """The daemons of `host` ("host:pid") holding a claim on a pending row."""
    return [owner for (owner,) in conn.execute(
        select(outbox.c.claimed_by).distinct().where(outbox.c.status == PENDING, outbox.c.claimed_by.startswith(f"{host}:", autoescape=True)))]


def release_claims(conn: Connection, owners: list[str]) -> int:
    """Free the rows `owners` (daemons that no longer run) claimed: they are pending again now,
    not once their lease runs out. Returns how many."""
    result = conn.execute(update(outbox).where(outbox.c.status == PENDING, outbox.c.claimed_by.in_(owners))
                          .values(claimed_by=None, claimed_until=None))
    return int(result.rowcount or 0)


def delivered(conn: Connection, row_id: int, now: datetime) -> None:
    conn.execute(update(outbox).where(outbox.c.id == row_id).values(status=DELIVERED, done_at=now, last_error=None,
                                                                   claimed_by=None, claimed_until=None))


def failed(conn: Connection, row_id: int, error: str, *, dead: bool, now: datetime) -> None:
    """One more failed attempt; `dead`: the row becomes a dead letter."""
    values: dict[str, Any] = {"attempts": outbox.c.attempts + 1, "last_error": scrub(error)[:2000],
                              "claimed_by": None, "claimed_until": None}
    if dead:
        values.update(status=DEAD, done_at=now)
    conn.execute(update(outbox).where(outbox.c.id == row_id, outbox.c.status == PENDING).values(**values))


# What may carry a secret in an error a CRM library wrote: a Bitrix24 inbound-webhook path
# (/rest/USER_ID/SECRET/), URL credentials, tokens in a query string.
_SECRETS = (
    (re.compile(r"(/rest/\d+/)[^/\s?]+"), r"\1***"),
    (re.compile(r"(://)[^/\s:@]+:[^/\s@]+@"), r"\1***@"),
    (re.compile(r"((?:access_token|refresh_token|auth|secret|signature)=)[^&\s]+", re.I), r"\1***"),
)


def scrub(error: str) -> str:
    """An error as the outbox keeps and shows it: without the secrets it may quote, phone numbers
    only by their last digits (as every log line shows them), and without control characters (a
    NUL, which a PostgreSQL text column refuses; terminal escapes)."""
    for pattern, replacement in _SECRETS:
        error = pattern.sub(replacement, error)
    return printable(error)


def purge(conn: Connection, before: datetime) -> int:
    """Forget delivered, dropped and superseded commands finished before `before`; how many."""
    result = conn.execute(outbox.delete().where(outbox.c.status.in_((DELIVERED, DROPPED, SUPERSEDED)),
                                                outbox.c.done_at < before))
    return int(result.rowcount or 0)


def retry(conn: Connection, row_id: int, now: datetime) -> Waiting | None:
    """A dead letter (or a pending row) pending again, with its attempts and its age
    (`dead_letter_after_hours`) counted from now: a dead letter of a day-long outage retried
    would otherwise die again at its first failure. Its `created_at` becomes the retry's time.
    A pending row keeps its claim: a daemon may be delivering it right now (a remote CRM's
    lease), or holding a hangup report back for tracking's; freeing it would let another daemon
    send it at the same time, or send the report before tracking's could replace it."""
    row = conn.execute(select(outbox.c.lane, outbox.c.status).where(outbox.c.id == row_id)).first()
    if row is None or row[1] not in (DEAD, PENDING):
        return None
    values: dict[str, Any] = {"attempts": 0, "created_at": now}
    if row[1] == DEAD:
        values.update(status=PENDING, done_at=None, claimed_by=None, claimed_until=None)
    changed = conn.execute(update(outbox).where(outbox.c.id == row_id, outbox.c.status == row[1]).values(**values))
    if not changed.rowcount:  # delivered or dropped by another daemon meanwhile
        return None
    return Waiting(row_id, row[0], now)


def drop(conn: Connection, row_id: int, now: datetime) -> bool:
    """Give up a pending row or a dead letter for good; False when there is none with that id."""
    result = conn.execute(update(outbox).where(outbox.c.id == row_id, outbox.c.status.in_((PENDING, DEAD)))
                          .values(status=DROPPED, done_at=now))
    return bool(result.rowcount)


def listing(conn: Connection, *, limit: int = 1000) -> list[dict[str, Any]]:
    """The pending rows and dead letters, oldest first, as `outbox list --json` shows them.
    What a command carries (numbers, names) is not shown: only its kind, call and lane end."""
    rows = conn.execute(
        select(outbox.c.id, outbox.c.kind, outbox.c.linkedid, outbox.c.lane, outbox.c.status, outbox.c.attempts,
               outbox.c.last_error, outbox.c.created_at)
        .where(outbox.c.status.in_((PENDING, DEAD))).order_by(outbox.c.id).limit(limit)
    )
    return [
        {"id": row_id, "kind": kind, "linkedid": linkedid, "status": status, "attempts": attempts,
         "last_error": last_error, "created_at": created_at.isoformat()}
        for row_id, kind, linkedid, _lane, status, attempts, last_error, created_at in rows
    ]


@dataclass(frozen=True)
class Depth:
    pending: int
    oldest_pending: datetime | None
    dead: int


def depth(conn: Connection) -> Depth:
    pending, oldest = conn.execute(
        select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.status == PENDING)
    ).one()
    dead = conn.execute(select(func.count()).where(outbox.c.status == DEAD)).scalar_one()
    if isinstance(oldest, str):  # an aggregate loses the column's type on SQLite
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return Depth(pending, oldest, dead)
