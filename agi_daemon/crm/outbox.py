"""The outbox: every command a call asks of the CRM is committed to the daemon's own store
first, then delivered by this worker, whatever the adapter.

- `submit(command)` returns once the command is committed (the same database as the call
  ledger). A store that cannot commit now (locked, disk full, overloaded) is retried with
  backoff until it can: a backlog waits, it is never given up.
- `run()` (a task of the app's TaskGroup) delivers: in order within a lane (the external
  number: a call's commands, and calls from the same number), lanes concurrently. A failed
  delivery is retried with exponential backoff and jitter, after the CRM's own `retry_after`
  when it gave one; a command the CRM rejects becomes a dead letter at once, with its message;
  one still failing after `max_attempts` attempts or `dead_after` becomes one too.
- Deliveries are idempotent by the command's key: for the embedded CRM the command is applied
  and marked delivered in one transaction; a remote adapter gets the key and the ledger.
- For a remote CRM, the dialplan's hangup report of a call is held back `hold_hangup_reports`
  seconds (core.commands.waits_for_tracking): call tracking's report of the same call, which
  names the transfers, usually comes a moment later and supersedes it while it waits (or
  later, as long as it was not sent); when tracking never reports, the hangup report is
  delivered once the grace is over. No call waits for it: the report is durable at once, only
  its delivery is later.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from ..core.commands import (
    CallLedger, CrmCommand, LedgerUpdate, LogCall, RecordOffer, as_seen_by, in_pbx, pbx_linkedid, waits_for_tracking,
)
from ..core.model import Offer
from ..core.ports import CrmDeliverer, CrmError, CrmRejected, CrmUnavailable
from ..core.phone import masked
from . import outbox_store
from .daemons import running, this_daemon, this_host
from .embedded import EmbeddedCrm
from .embedded_delivery import apply_row, store_and_apply
from .outbox_store import Depth, Waiting

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.5  # the first retry of a delivery; doubled each attempt
MAX_DELAY_S = 300.0
BACKLOG_MAX_DELAY_S = 5.0  # reading the pending commands at start is retried this often at worst
SUBMIT_MAX_DELAY_S = 2.0  # committing a command to the store is retried this often at worst
DELIVERY_TIMEOUT_S = 30.0  # one delivery attempt at most this long (a remote CRM that hangs)
# A remote delivery's claim on its row: another daemon takes the row over once it has run out
# (the daemon that claimed it died); longer than any delivery attempt, so a live one never loses it.
CLAIM_LEASE = timedelta(seconds=4 * DELIVERY_TIMEOUT_S)
# Marking a delivered command so, when the store is unavailable: tried again after this, doubling
MARK_RETRY_FIRST_S = 0.1
MARK_RETRY_MAX_S = 5.0
CONCURRENCY = 16  # lanes delivered at the same time
# How long a remote CRM's hangup report waits for call tracking's report of the same call (which
# arrives within a second of the hangup when AMI is up): the finish then names the transfer target.
HANGUP_REPORT_GRACE_S = 3.0
KEEP_DELIVERED = timedelta(days=7)
PURGE_EVERY_S = 3600.0

Delivered = Callable[[CrmCommand, LedgerUpdate], None]


@dataclass(frozen=True)
class OutboxState:
    """What the admin page, /metrics and the logs show."""

    pending: int
    oldest_pending_seconds: float
    dead: int


class Delivery:
    """How one pending row reaches the CRM: applied to the embedded tables in the transaction
    that marks it delivered, or sent to a remote CRM's deliverer, then marked delivered."""

    def __init__(self, store: EmbeddedCrm, remote: CrmDeliverer | None = None, *,
                 lease: timedelta = CLAIM_LEASE) -> None:
        self._store = store
        self._remote = remote
        self.local = remote is None
        self._claim = (this_daemon(), lease)  # who claims, for how long
        self.claimant = self._claim[0]

    async def release_dead_claims(self) -> int:
        """At start: the claims a daemon of this host left when it died (kill -9 while sending)
        are freed at once; a claim of another host waits for its lease. Returns how many rows."""
        host = this_host()

        def release(conn: Connection) -> int:
            dead = [owner for owner in outbox_store.claimants(conn, host) if not running(owner)]
            return outbox_store.release_claims(conn, dead) if dead else 0

        return await self._store.transaction("free a dead daemon's claims", release, write=True)

    async def __call__(self, row_id: int) -> tuple[CrmCommand, LedgerUpdate] | None:
        now = datetime.now(UTC)
        if self._remote is None:
            return await self._store.transaction("deliver a CRM command", lambda conn: apply_row(conn, row_id, now),
                                                 write=True)
        remote = self._remote

        def claim(conn: Connection) -> tuple[outbox_store.Stored, CallLedger] | None:
            stored = outbox_store.take(conn, row_id, now, claim=self._claim)
            if stored is None:
                return None
            return stored, outbox_store.ledger(conn, stored.command.linkedid)

        found = await self._store.transaction("claim a CRM command", claim, write=True)
        if found is None:
            return None
        stored, known = found
        try:  # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that
            # arrives as the delivery finishes, and the outbox would not stop (services/retry.py)
            async with asyncio.timeout(DELIVERY_TIMEOUT_S):
                learned = await remote.deliver(stored.command, known)
        except TimeoutError:
            raise CrmUnavailable(f"no answer within {DELIVERY_TIMEOUT_S:.0f} s") from None

        def done(conn: Connection) -> None:
            outbox_store.learn(conn, known, learned, datetime.now(UTC))
            outbox_store.delivered(conn, row_id, datetime.now(UTC))

        await self._mark_delivered(row_id, done)
        return stored.command, learned

    async def _mark_delivered(self, row_id: int, done: Callable[[Connection], None]) -> None:
        """The remote CRM has the command: what it answered (the call it registered, the
        records it created) must reach the store, or the command would be sent again once its
        claim runs out, with a ledger that does not know them (a second call registered). A
        store unavailable meanwhile (another daemon's lock, a lost connection) is tried again
        while the claim lasts, half its lease."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._claim[1].total_seconds() / 2
        delay = MARK_RETRY_FIRST_S
        while True:
            try:
                await self._store.transaction("mark a CRM command delivered", done, write=True)
                return
            except CrmUnavailable as error:
                if loop.time() + delay > give_up:
                    raise
                log.warning("outbox: %s was delivered but could not be marked so (%s); trying again in %.1f s",
                            row_id, outbox_store.scrub(str(error)), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MARK_RETRY_MAX_S)


class Outbox:
    def __init__(
        self,
        store: EmbeddedCrm,
        deliver: Delivery,
        *,
        max_attempts: int = 20,
        dead_after: timedelta = timedelta(hours=24),
        concurrency: int = CONCURRENCY,
        first_delay: float = FIRST_DELAY_S,
        on_delivered: Delivered | None = None,
        pbx: str | None = None,
        hold_hangup_reports: float = 0.0,
    ) -> None:
        self._store = store
        self._pbx = pbx  # daemon.pbx_id: this daemon's calls are stored as "<pbx>:<linkedid>"
        self._deliver = deliver
        self._max_attempts = max_attempts
        self._dead_after = dead_after
        self._concurrency = concurrency
        self._first_delay = first_delay
        self._on_delivered = on_delivered
        self._hold = hold_hangup_reports  # seconds a hangup report waits for tracking's (0: not held)
        self._superseded: set[int] = set()  # held rows a later report made moot: skipped, not delivered
        self._lanes: dict[str, deque[Waiting]] = {}
        self._busy: set[str] = set()  # lanes being delivered, or waiting for a retry
        self._direct: dict[str, asyncio.Future[None]] = {}  # lanes with a direct submission in flight
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        # lane -> (its timer, and for a retry's backoff the loop time before which the CRM itself
        # asked not to retry: its Retry-After, 0.0 when it said nothing; None for a wait that the
        # CRM answering again does not shorten: a held row, a Retry-After)
        self._timers: dict[str, tuple[asyncio.TimerHandle, float | None]] = {}
        self._tries: dict[int, int] = {}  # row id -> failed attempts since this daemon started
        self._started = False
        self._housekeeping_said: dict[str, str] = {}  # upkeep -> its failure logged, until it works again
        self._local = deliver.local  # the embedded CRM: a command can be stored and applied at once
        self.state = OutboxState(0, 0.0, 0)

    # -- submitting -----------------------------------------------------------------------

    async def submit(self, command: CrmCommand) -> None:
        """Commit `command` to the store, retrying until the store can take it; then it is
        delivered. A command whose key is already stored is left as it is.

        For the embedded CRM, when nothing of the command's lane waits before it, the command
        is stored and applied in one transaction: durable and delivered at once. When only
        another direct submission of the lane is in flight (a call's two reports arriving
        together), it waits for that one and goes direct too: one transaction, not two."""
        command = in_pbx(command, self._pbx)
        delay, try_direct = 0.02, True
        while True:
            lane = outbox_store.lane_of(command)
            direct = try_direct and self._local and self._started and lane not in self._busy
            ahead = None if direct or not try_direct or self._lanes.get(lane) else self._direct.get(lane)
            if ahead is not None:
                await asyncio.wait([ahead])  # never cancels the other submission
                continue
            if direct:
                self._busy.add(lane)
                self._direct[lane] = asyncio.get_running_loop().create_future()
            try:
                if direct:
                    outcome = await self._store_and_apply(command)
                    if outcome is not None:
                        self._delivered(*outcome)
                    return
                waiting, moot = await self._store.transaction("store a CRM command",
                                                              lambda conn: self._add(conn, command), write=True)
                break
            except CrmRejected:  # applying it failed: store it alone, the worker makes it a dead letter
                if not direct:
                    raise
                try_direct = False
                continue
            except CrmUnavailable as error:
                log.warning("call %s: CRM command waits for the store (%s), retrying", command.linkedid, error)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, SUBMIT_MAX_DELAY_S)
            finally:
                if direct:
                    self._release(lane)
        if waiting is not None:
            self._queue(waiting)
        if moot:
            self._skip(moot, outbox_store.lane_of(command))

    def _add(self, conn: Connection, command: CrmCommand) -> tuple[Waiting | None, list[int]]:
        """Store `command`: held back a grace when it waits for tracking's report; a report
        that supersedes a held one marks it so (its id returned)."""
        now = datetime.now(UTC)
        waiting = outbox_store.add(conn, command, now)
        if waiting is not None and self._hold and waits_for_tracking(command):
            until = now + timedelta(seconds=self._hold)
            outbox_store.hold(conn, waiting.id, self._deliver.claimant, until)
            return replace(waiting, not_before=until), []
        if waiting is None or not self._hold or not isinstance(command, LogCall):
            return waiting, []
        return waiting, outbox_store.supersede(conn, command, now)

    def _skip(self, moot: list[int], lane: str) -> None:
        """Held rows superseded: never delivered; their lane goes on at once."""
        self._superseded.update(moot)
        log.info("outbox: a call's hangup report %s superseded by call tracking's", ", ".join(map(str, moot)))
        queue = self._lanes.get(lane)
        if queue and queue[0].id in self._superseded and lane in self._timers:  # it waited for the held row
            self._timers.pop(lane)[0].cancel()
            self._ready.put_nowait(lane)

    async def _store_and_apply(self, command: CrmCommand) -> tuple[CrmCommand, LedgerUpdate] | None:
        return await self._store.transaction(
            "store and apply a CRM command", lambda conn: store_and_apply(conn, command, datetime.now(UTC)), write=True
        )

    def _release(self, lane: str) -> None:
        """A direct submission is over: the lane is free, unless commands queued meanwhile."""
        over = self._direct.pop(lane, None)
        if over is not None:
            over.set_result(None)
        if self._lanes.get(lane):
            self._ready.put_nowait(lane)
        else:
            self._busy.discard(lane)

    async def offer(self, linkedid: str) -> Offer | None:
        """The offer (R3) this daemon's call `linkedid` made, as stored: for a call found in
        progress after a restart, whose routing an earlier run did."""
        stored = pbx_linkedid(self._pbx, linkedid)
        found = await self._store.transaction("read a call's offer", lambda conn: outbox_store.offer(conn, stored),
                                              write=False)
        ours = None if found is None else as_seen_by(found, self._pbx)
        return ours.offer if isinstance(ours, RecordOffer) else None

    async def ledger(self, linkedid: str) -> CallLedger:
        stored = pbx_linkedid(self._pbx, linkedid)
        row = await self._store.read_row("read a call's ledger", outbox_store.LEDGER_READ, {"linkedid": stored})
        return outbox_store.ledger_of(stored, row)

    def _delivered(self, command: CrmCommand, learned: LedgerUpdate) -> None:
        ours = as_seen_by(command, self._pbx)  # None: another PBX's call, delivered by this daemon
        if self._on_delivered is not None and ours is not None:
            try:
                self._on_delivered(ours, learned)
            except Exception:
                log.exception("outbox: what follows the delivery of %s failed", command.key)

    # -- delivering -----------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver what is pending (left by an earlier run too), then whatever is submitted,
        until cancelled (the app's TaskGroup, at the stop)."""
        try:
            freed = await self._deliver.release_dead_claims()
        except CrmError as error:  # the lease frees them later all the same
            log.warning("outbox: could not free the claims of a stopped daemon yet (%s)", outbox_store.scrub(str(error)))
        else:
            if freed:
                log.info("outbox: %d CRM commands claimed by a daemon of this host that stopped, taken back", freed)
        backlog = await self._load_backlog()
        for waiting in backlog:
            self._queue(waiting)
        if backlog:
            log.info("outbox: %d CRM commands left pending by an earlier run, delivering", len(backlog))
        self._started = True
        try:
            async with asyncio.TaskGroup() as workers:
                for _ in range(self._concurrency):
                    workers.create_task(self._work())
                workers.create_task(self._watch())
        finally:
            for timer, _ in self._timers.values():
                timer.cancel()

    async def _load_backlog(self) -> list[Waiting]:
        """What is pending in the store. Nothing is delivered (nor applied, on the embedded CRM)
        before it is read: retried every few seconds at most, so that delivery starts soon after
        the store answers again; a refusal (a schema another daemon is migrating, a revoked grant)
        is retried too, and never ends the daemon."""
        delay = 0.1
        said = None
        while True:
            try:
                return await self._store.transaction("read the outbox", outbox_store.waiting, write=False)
            except CrmError as error:
                reason = outbox_store.scrub(str(error))
                if reason != said:  # once per reason, not at every retry
                    (log.error if isinstance(error, CrmRejected) else log.warning)(
                        "outbox: cannot read the pending commands yet (%s); retried every %g s at most",
                        reason, BACKLOG_MAX_DELAY_S)
                    said = reason
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKLOG_MAX_DELAY_S)

    async def settle(self, timeout: float) -> bool:
        """At the stop: wait (at most `timeout` seconds) until nothing submitted in this run
        waits for its delivery; True when nothing does. What is left stays pending in the
        store and is delivered at the next start."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        while any(self._lanes.values()) or self._busy:
            if loop.time() >= until:
                return False
            await asyncio.sleep(0.05)
        return True

    def retry_now(self, waiting: Waiting) -> None:
        """A row put back to pending (`outbox retry`, the admin page): deliver it, its attempts
        and its age counted from the retry, also when it is still queued here (a pending row)."""
        self._tries.pop(waiting.id, None)
        lane = self._lanes.get(waiting.lane)
        if lane is not None:
            for index, queued in enumerate(lane):
                if queued.id == waiting.id:  # a held hangup report stays held
                    lane[index] = dataclasses.replace(waiting, not_before=queued.not_before)
                    return
        self._queue(waiting)

    def _queue(self, waiting: Waiting) -> None:
        lane = self._lanes.setdefault(waiting.lane, deque())
        if any(queued.id == waiting.id for queued in lane):
            return
        lane.append(waiting)
        if waiting.lane not in self._busy:
            self._busy.add(waiting.lane)
            self._ready.put_nowait(waiting.lane)

    async def _work(self) -> None:
        while True:
            lane = await self._ready.get()
            await self._deliver_lane(lane)

    async def _deliver_lane(self, lane: str) -> None:
        queue = self._lanes.get(lane)
        while queue:
            head = queue[0]
            if head.id in self._superseded:
                self._superseded.discard(head.id)
                queue.popleft()
                continue
            if head.not_before is not None:
                wait = (head.not_before - datetime.now(UTC)).total_seconds()
                if wait > 0:  # held back: the lane waits (busy) until then, or until superseded
                    self._timers[lane] = (asyncio.get_running_loop().call_later(wait + 0.05, self._wake, lane), None)
                    return
            try:
                outcome = await self._deliver(head.id)
            except CrmRejected as error:
                await self._fail(head, str(error), dead=True)
            except CrmUnavailable as error:
                tries = self._tries.get(head.id, head.attempts) + 1
                self._tries[head.id] = tries
                too_old = datetime.now(UTC) - head.created_at > self._dead_after
                if tries >= self._max_attempts or too_old:
                    await self._fail(head, str(error), dead=True)
                else:
                    await self._fail(head, str(error), dead=False)
                    delay = max(error.retry_after or 0.0, self._backoff(tries))  # the CRM's hint: at least
                    log.warning("outbox: %s for %s failed (attempt %d: %s), next try in %.1f s",
                                head.id, masked(lane), tries, outbox_store.scrub(str(error)), delay)
                    loop = asyncio.get_running_loop()
                    asked_until = loop.time() + error.retry_after if error.retry_after else 0.0
                    self._timers[lane] = (loop.call_later(delay, self._wake, lane), asked_until)
                    return  # the lane stays busy until its timer fires, or until the CRM answers again
            except Exception as error:  # a bug must not stop every other delivery
                log.exception("outbox: delivering %s crashed", head.id)
                await self._fail(head, f"crashed: {type(error).__name__}", dead=True)
            else:
                if outcome is not None:
                    self._delivered(*outcome)
                self._crm_answers_again()
            self._tries.pop(head.id, None)
            queue.popleft()
        self._lanes.pop(lane, None)
        self._busy.discard(lane)

    async def _fail(self, head: Waiting, error: str, *, dead: bool) -> None:
        if dead:
            log.error("outbox: CRM command %s is a dead letter: %s", head.id, outbox_store.scrub(error))
        try:
            await self._store.transaction(
                "record a failed delivery",
                lambda conn: outbox_store.failed(conn, head.id, error, dead=dead, now=datetime.now(UTC)), write=True,
            )
        except CrmUnavailable:
            if dead:  # cannot be recorded now: stays pending, delivered again at the next run
                log.warning("outbox: could not record the dead letter %s; it stays pending", head.id)
        except CrmRejected as refused:  # the store refuses the record itself: the lane must go on all the same
            log.error("outbox: the store refused to record the failed delivery of %s (%s); it stays pending",
                      head.id, outbox_store.scrub(str(refused)))

    async def _pick_up_strays(self) -> None:
        """Rows pending in the store that this worker does not know of (`outbox retry` run from
        the command line while the daemon runs): queue them."""
        try:
            for waiting in await self._store.transaction("read the outbox", outbox_store.waiting, write=False):
                if waiting.lane not in self._busy:
                    self._queue(waiting)
        except CrmError as error:  # read again at the next watch
            self._housekeeping_failed("read the outbox", error)
        else:
            self._housekeeping_done("read the outbox")

    def _wake(self, lane: str) -> None:
        self._timers.pop(lane, None)
        self._ready.put_nowait(lane)

    def _crm_answers_again(self) -> None:
        """A delivery went through while other lanes wait out a backoff (the CRM was down): they
        try again now, so a backlog drains as soon as the CRM is back, not up to MAX_DELAY_S
        later each; a lane the CRM itself asked to wait (Retry-After) waits until then."""
        backing_off = [(lane, asked) for lane, (_, asked) in self._timers.items() if asked is not None]
        if not backing_off:
            return
        loop = asyncio.get_running_loop()
        log.info("outbox: the CRM answers again; %d waiting lanes retried now", len(backing_off))
        for lane, asked_until in backing_off:
            self._timers.pop(lane)[0].cancel()
            if asked_until > loop.time():
                self._timers[lane] = (loop.call_later(asked_until - loop.time(), self._wake, lane), None)
            else:
                self._ready.put_nowait(lane)

    def _backoff(self, tries: int) -> float:
        """Exponential backoff with full jitter: between half and all of first * 2^(tries-1)."""
        ceiling = min(self._first_delay * 2 ** (tries - 1), MAX_DELAY_S)
        return ceiling * (0.5 + random.random() / 2)

    # -- what the admin sees ----------------------------------------------------------------

    async def listing(self) -> list[dict[str, object]]:
        """The pending commands and dead letters, as `agi-daemon outbox list --json`."""
        return await self._store.transaction("list the outbox", outbox_store.listing, write=False)

    async def retry(self, row_id: int) -> bool:
        """A dead letter (or a pending command) delivered again now; False if there is none."""
        back = await self._store.transaction(
            "retry a CRM command", lambda conn: outbox_store.retry(conn, row_id, datetime.now(UTC)), write=True)
        if back is None:
            return False
        log.info("outbox: CRM command %d put back in line by the admin", row_id)
        self.retry_now(back)
        return True

    async def depth(self) -> Depth:
        return await self._store.transaction("count the outbox", outbox_store.depth, write=False)

    async def refresh(self) -> OutboxState:
        """Count again what waits and what was given up (`state`)."""
        depth = await self.depth()
        age = 0.0 if depth.oldest_pending is None else (datetime.now(UTC) - depth.oldest_pending).total_seconds()
        self.state = OutboxState(depth.pending, max(age, 0.0), depth.dead)
        return self.state

    async def _watch(self, every: float = 5.0) -> None:
        """Keep `state` fresh for /metrics and the admin page; log a backlog or dead letters."""
        logged = OutboxState(0, 0.0, 0)
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        while True:
            try:
                state = await self.refresh()
            except CrmError as error:
                self._housekeeping_failed("count the outbox", error)
                await asyncio.sleep(every)
                continue
            self._housekeeping_done("count the outbox")
            if state != logged and (state.dead != logged.dead or state.oldest_pending_seconds > 10
                                    or logged.oldest_pending_seconds > 10):
                log.info("outbox: %d CRM commands pending (oldest %.0f s), %d dead letters",
                         state.pending, state.oldest_pending_seconds, state.dead)
                logged = state
            if state.pending > sum(len(lane) for lane in self._lanes.values()):
                await self._pick_up_strays()
            if loop.time() >= next_purge:
                next_purge = loop.time() + PURGE_EVERY_S
                await self._purge()
            await asyncio.sleep(every)

    async def _purge(self) -> None:
        """Delivered commands are kept a week (their keys make a late duplicate a no-op), then go."""
        before = datetime.now(UTC) - KEEP_DELIVERED
        try:
            gone = await self._store.transaction("purge the outbox", lambda conn: outbox_store.purge(conn, before),
                                                 write=True)
        except CrmError as error:  # purged at the next round
            self._housekeeping_failed("purge the outbox", error)
            return
        self._housekeeping_done("purge the outbox")
        if gone:
            log.info("outbox: %d delivered CRM commands older than %d days forgotten", gone, KEEP_DELIVERED.days)


    def _housekeeping_failed(self, what: str, error: CrmError) -> None:
        """The outbox's own upkeep (counting, picking up, purging) failed: it is tried again at
        the next round, and deliveries go on. A refusal (CrmRejected: the schema or a grant
        changed under the daemon) is an error an admin must see; it never ends the daemon."""
        said = f"outbox: the store refused to {what} ({outbox_store.scrub(str(error))}); tried again in a while"
        if isinstance(error, CrmRejected) and said != self._housekeeping_said.get(what):  # once, not every round
            log.error("%s", said)
        self._housekeeping_said[what] = said

    def _housekeeping_done(self, what: str) -> None:
        """`what` worked: its next failure is logged again."""
        self._housekeeping_said.pop(what, None)
