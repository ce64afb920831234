"""The Bitrix24 adapter: the call path's lookup (`CrmLookup`) and the outbox's deliverer
(`CrmDeliverer`) on one portal client.

What each command leaves on the portal:
- `CreateCallRecords`: classic mode a lead; simple mode a contact (or company) and a deal in
  the pipeline's CATEGORY_ID; each with SOURCE_ID = the line's source, ASSIGNED_BY_ID = the
  responsible's user, the PHONE multifield and ORIGIN_ID = the command's key. Then the call is
  registered (EXTERNAL_CALL_ID = the linkedid) bound to the deal or lead. Every delivery looks
  first (`crm.<type>.list` by ORIGIN_ID, and the number's known client): a delivery repeated
  after a lost answer or a `kill -9` finds what the first one created instead of creating it
  again; a number another call created first is joined, not created twice. A call registered
  before its records (an offer line: the agent creates the lead or contact from the call
  window) is not registered again; its CRM activity is bound to the records
  (crm.activity.binding.add, looking first with crm.activity.binding.list) once it is
  finished: by `LogCall` right after the finish, or by this command when the agent creates the
  record after the call ended.
- `RecordOffer`: the call registered with CRM_CREATE=0 and SHOW=1, so Bitrix24's own card
  offers the agent to create the lead or contact.
- `LogCall`: `telephony.externalcall.finish` on the registered call (registered first when no
  earlier command did), USER_ID = the last transfer target or who answered, DURATION = talk
  seconds; the finish's CRM_ACTIVITY_ID is kept in the ledger. Bitrix24 cannot un-finish a call: the first report to arrive finishes it and a later
  report changes nothing at the portal. The outbox holds the dialplan's hangup report back a
  short grace, so call tracking's (which names the transfer target) supersedes it; only when
  tracking is late or down does the hangup report finish the call.
- `CallCardChange` (`crm.bitrix24.card`): `telephony.externalcall.show` / `hide` of the call's
  card for the employees' users, in the call's lane (after its registration, before its
  finish); a call not registered yet is registered first (SHOW=0); nothing once finished.
- `ChangeResponsible`: crm.<type>.update ASSIGNED_BY_ID on the records the ledger says the
  call created, and only those.

In simple mode no lead exists on the portal: the ledger records the deal in the lead's place.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from agi_daemon.core.call_cards import CardPolicy
from agi_daemon.core.commands import (
    CallCardChange, CallLedger, ChangeResponsible, CreateCallRecords, CrmCommand, LedgerUpdate, LogCall, NOTHING_LEARNED, RecordOffer,
)
from agi_daemon.core.crm_errors import RemoteCrmUnavailable
from agi_daemon.core.model import (
    CallRecord, CreatedRecords, CreateWith, CrmMode, Direction, EntityRef, EntityType, Match, RecordPlan,
)
from agi_daemon.core.phone import masked
from agi_daemon.core.ports import CrmError, CrmRejected, CrmUnavailable

from .cache import LookupCache
from .client import BatchResult, Bitrix24Client, Command
from .operations import (
    Bitrix24Operations, CallToFinish, CallToRegister, EmployeeDirectory, EmployeeLink, NewRecord, create_command,
    finish_command, finish_status, register_command, registered, responsible_command,
)

log = logging.getLogger(__name__)

EMPLOYEES_READ_S = 10.0  # how long a reload's change of employees waits for the portal to name their users
# After the portal refused to name the users (a webhook without the `user` scope), how long
# deliveries go on without asking again: each read is a request of the portal's budget.
USERS_REFUSED_RETRY_S = 600.0

# The call's own entries in the ledger's `remote_ids` (beside the records' "lead:12"):
ACTIVITY = "call:activity"  # the CRM activity the portal created when it finished the call
UNBOUND = "call:unbound"  # "1": registered before its records, so its activity is bound to them after the finish


class Bitrix24Crm:
    """`CrmLookup` and `CrmDeliverer` for one portal. `pipelines`: crm.simple.pipeline name ->
    deal CATEGORY_ID; `employees`: the config's employee ids, in order (the first with a portal
    user registers calls nobody in particular took)."""

    def __init__(self, client: Bitrix24Client, directory: EmployeeDirectory, employees: Iterable[str], *,
                 deadline_seconds: float, pipelines: dict[str, int], mode: CrmMode | None = None,
                 cache: LookupCache | None = None, card: CardPolicy = CardPolicy.RINGING) -> None:
        self.client = client
        self._card_policy = card  # crm.bitrix24.card: an offer's registration shows the card only with `ringing`
        self.directory = directory
        self.operations = Bitrix24Operations(client, directory, cache)
        self._employees = tuple(employees)
        self._deadline = deadline_seconds
        self._pipelines = dict(pipelines)
        self._mode = mode
        self._cache = cache
        self._loaded = False
        self._loading = asyncio.Lock()
        self._users_refused_at: float | None = None  # time.monotonic() of the last refused read
        self.users_refused_retry_s = USERS_REFUSED_RETRY_S
        self._opened = False

    # ---- life ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._opened:
            return
        self._opened = True
        await self.client.open()
        try:
            await self._load_directory()
            if self._mode is not None:
                mismatch = await self.operations.mode_mismatch(self._mode)
                if mismatch:
                    log.error("bitrix24: %s", mismatch)
        except CrmError as error:  # the portal is down at start: the outbox waits for it
            log.warning("bitrix24 %s: not reachable at start (%s); employees are matched at the first delivery",
                        self.client.host, error)

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self.client.close()

    async def employees_changed(self, links: Iterable[EmployeeLink], employees: Iterable[str]) -> None:
        """A reload changed the employees (or their `crm_user`): their portal users are found
        again now; when the portal does not answer, at the next delivery."""
        try:
            async with asyncio.timeout(EMPLOYEES_READ_S), self._loading:
                await self.directory.renew(links, self.client)
                self._loaded = True
        except (CrmError, TimeoutError) as exc:
            log.warning("bitrix24: employees changed, portal users not read now (%s); read at the next delivery",
                        str(exc) or f"no answer within {EMPLOYEES_READ_S:g} s")
            await self.directory.renew(links, None)
            self._loaded = False
        self._employees = tuple(employees)

    def pipelines_changed(self, pipelines: dict[str, int]) -> None:
        """A reload's crm.bitrix24.pipelines. crm.simple.pipeline is in the rules, which a reload
        swaps at once: the category map goes with it (the caller takes both with no await
        between), or a new pipeline's deals would land in category 0 until a restart."""
        if pipelines != self._pipelines:
            categories = ", ".join(f"{name}: {category}" for name, category in pipelines.items())
            log.warning("bitrix24: crm.bitrix24.pipelines taken now, for the deals of the next calls: %s "
                        "(its other keys wait for the restart)", categories)
        self._pipelines = dict(pipelines)

    async def _load_directory(self) -> None:
        """The employees' portal users, read once. A read that failed leaves them unread:
        unavailable, the delivery fails too and is retried (its records get the right user);
        refused, the deliveries go on with the users known, and ask again after
        `users_refused_retry_s`."""
        async with self._loading:
            refused_at = self._users_refused_at
            if self._loaded or (refused_at is not None and time.monotonic() - refused_at < self.users_refused_retry_s):
                return
            try:
                await self.directory.load(self.client)
            except CrmRejected as error:
                self._users_refused_at = time.monotonic()
                log.warning("bitrix24 %s: portal users not read (%s): employees without crm_user get the "
                            "fallback user; asked again in %.0f s", self.client.host, error, self.users_refused_retry_s)
                return
            self._loaded = True
            self._users_refused_at = None

    # ---- the call path -------------------------------------------------------------------

    async def find_by_phone(self, phone: str) -> Match | None:
        found = await self.operations.find_client(phone, self._deadline)
        if found is None:
            return None
        return Match(EntityRef(found.entity, found.entity_id), found.responsible)

    # ---- the outbox ----------------------------------------------------------------------

    async def deliver(self, command: CrmCommand, ledger: CallLedger) -> LedgerUpdate:
        try:
            await self._load_directory()
            if isinstance(command, CreateCallRecords):
                return await self._create(command, ledger)
            if isinstance(command, RecordOffer):
                return await self._offer(command, ledger)
            if isinstance(command, LogCall):
                return await self._log(command, ledger)
            if isinstance(command, CallCardChange):
                return await self._card(command, ledger)
            return await self._responsible(command, ledger)
        except RemoteCrmUnavailable as error:  # the outbox reads `retry_after`
            raise CrmUnavailable(str(error), retry_after=error.retry_after_seconds) from None

    def _user(self, *employees: str | None) -> int:
        """The portal user of the first of `employees` that has one; else of any employee;
        else the webhook's own user (1)."""
        for employee in (*employees, *self._employees):
            user = self.directory.user_of(employee) if employee else None
            if user is not None:
                return user
        return 1

    async def _create(self, command: CreateCallRecords, ledger: CallLedger) -> LedgerUpdate:
        plan = command.plan
        if ledger.created is not None and ledger.remote_call_id is not None:
            return NOTHING_LEARNED  # already delivered (a duplicate row)
        kinds = _kinds(plan)
        look = [Command(f"o_{kind.value}", f"crm.{kind.value}.list",
                        {"filter": {"ORIGIN_ID": command.key}, "select": ["ID"]}) for kind in kinds]
        look.append(Command("known", "telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": plan.phone}))
        found = _checked(await self.client.batch(look))
        mine = {kind: _first_id(found.results.get(f"o_{kind.value}")) for kind in kinds}
        if all(ident is None for ident in mine.values()):
            known = found.results.get("known")
            joined = _known(known)
            if joined is not None:  # another call from this number created the client first
                log.info("bitrix24 %s: %s joins %s", self.client.host, masked(plan.phone), joined)
                if ledger.remote_call_id is not None:  # registered already: once finished, a registration opens a second call
                    return LedgerUpdate(joined=joined, remote_call_id=ledger.remote_call_id)
                call = await self.operations.register_call(self._registration(plan, joined))
                return LedgerUpdate(joined=joined, remote_call_id=call.call_id)
        user = self.directory.user_of(plan.responsible) if plan.responsible else None
        if plan.responsible and user is None:  # unmatched, or removed from the YAML file since the call
            log.warning("bitrix24 %s: call %s: the responsible %s has no portal user (not matched, or no "
                        "longer in the config file): the portal assigns the records to the webhook's own user",
                        self.client.host, plan.linkedid, plan.responsible)
        writes: list[Command] = []
        for kind in kinds:
            if mine[kind] is None:
                writes.append(create_command(kind.value, self._record(plan, command.key, kind, user, mine)))
        # A call registered before its records (an offer line, the agent creating the record
        # from the call window) is not registered again: the portal binds a call to a record
        # only when it registers it. Its activity is bound to the records instead, once the
        # call is finished (the finish creates the activity).
        earlier_call = ledger.remote_call_id
        if earlier_call is None:
            primary = kinds[-1]  # the deal in simple mode, the lead in classic mode
            primary_id: Any = mine[primary] if mine[primary] is not None else f"$result[{primary.value}]"
            registration = replace(self._registration(plan, EntityRef(primary, 0)), entity_id=primary_id)
            writes.append(register_command("call", registration))
        if self._cache is not None:
            self._cache.forget_phone(plan.phone)
        done = _checked(await self.client.batch(writes, halt=True)) if writes else None
        if self._cache is not None:
            self._cache.forget_phone(plan.phone)
        ids = {kind: _id_of(mine[kind] if mine[kind] is not None else done and done.results.get(kind.value), kind)
               for kind in kinds}
        refs = {kind: EntityRef(kind, ident) for kind, ident in ids.items()}
        created = _created(refs)
        log.info("bitrix24 %s: %s created %s for %s", self.client.host, plan.linkedid,
                 ", ".join(map(str, refs.values())), masked(plan.phone))
        remote_ids = {str(ref): str(ref.id) for ref in refs.values()}
        if earlier_call is None:
            call_id = registered(done and done.results.get("call"), self.client.host).call_id
        else:
            call_id = earlier_call
            remote_ids[UNBOUND] = "1"  # the call's activity is bound to them after its finish
            activity = ledger.remote_ids.get(ACTIVITY)
            if ledger.logged is not None:  # finished already: the agent created the record late
                await self._bind(plan.linkedid, int(activity) if activity else None, created)
        return LedgerUpdate(created=created, remote_ids=remote_ids, remote_call_id=call_id)

    async def _bind(self, linkedid: str, activity_id: int | None, created: CreatedRecords) -> None:
        """The finished call's activity bound to the records created during or after the call
        (the record the call is logged on first; in simple mode also the deal's contact or
        company, as the portal binds a call registered on a deal)."""
        if activity_id is None:
            log.warning("bitrix24 %s: call %s: the portal gave no CRM activity for it; its records %s are not "
                        "bound to it", self.client.host, linkedid, ", ".join(map(str, created.all)))
            return
        records = [(ref.type, ref.id) for ref in (created.primary, *created.all)]
        added = await self.operations.bind_activity(activity_id, records)
        if added:
            log.info("bitrix24 %s: call %s (activity %d) bound to %s", self.client.host, linkedid, activity_id,
                     ", ".join(f"{entity.value}:{ident}" for entity, ident in added))

    def _record(self, plan: RecordPlan, key: str, kind: EntityType, user: int | None,
                mine: dict[EntityType, int | None]) -> NewRecord:
        links: dict[str, Any] = {}
        if kind is EntityType.DEAL:
            for partner in (EntityType.CONTACT, EntityType.COMPANY):
                if partner in mine:
                    field = "CONTACT_ID" if partner is EntityType.CONTACT else "COMPANY_ID"
                    links[field] = mine[partner] if mine[partner] is not None else f"$result[{partner.value}]"
        category = self._pipelines.get(plan.pipeline, 0) if kind is EntityType.DEAL else None
        return NewRecord(kind, plan.name, key, plan.source, assigned_by_id=user, phone=plan.phone,
                         category_id=category, links=links)

    def _registration(self, plan: RecordPlan, entity: EntityRef) -> CallToRegister:
        return CallToRegister(plan.linkedid, plan.direction, plan.phone, plan.line, user_id=self._user(plan.responsible),
                              source=plan.source, entity=entity.type, entity_id=entity.id)

    async def _offer(self, command: RecordOffer, ledger: CallLedger) -> LedgerUpdate:
        offer = command.offer
        call = await self.operations.register_call(CallToRegister(
            offer.linkedid, offer.direction, offer.phone, offer.line, user_id=self._user(*offer.employees),
            create=False, show=self._card_policy is CardPolicy.RINGING))
        return LedgerUpdate(remote_call_id=call.call_id)

    async def _log(self, command: LogCall, ledger: CallLedger) -> LedgerUpdate:
        if ledger.logged is not None:
            log.info("bitrix24 %s: call %s already finished (%s report); the %s report changes nothing there",
                     self.client.host, ledger.linkedid, ledger.logged.value, command.report.value)
            return NOTHING_LEARNED
        record = command.record
        who = _who(record)
        user = self._user(who)
        call_id = ledger.remote_call_id
        writes: list[Command] = []
        if call_id is None:
            entity = ledger.entity
            if entity is None and command.look_up is not None:
                known = await self.operations.find_client(command.look_up)
                entity = None if known is None else EntityRef(known.entity, known.entity_id)
            remote = int(ledger.remote_ids.get(str(entity), entity.id)) if entity is not None else None
            writes.append(register_command("call", CallToRegister(
                record.linkedid, record.direction, record.number, record.line, user_id=user,
                entity=None if entity is None else entity.type, entity_id=remote)))
        finish = CallToFinish(call_id or "$result[call][CALL_ID]", round(record.talk_seconds),
                              finish_status(record.disposition), user_id=user)
        writes.append(finish_command("finish", finish))
        done = _checked(await self.client.batch(writes, halt=True))
        if call_id is None:
            call_id = registered(done.results.get("call"), self.client.host).call_id
        log.info("bitrix24 %s: call %s finished (%s, %d s)", self.client.host, record.linkedid, finish.status.value,
                 finish.duration_seconds)
        activity = _activity_id(done.results.get("finish"))
        if ledger.created is not None and ledger.remote_ids.get(UNBOUND):
            await self._bind(record.linkedid, activity, ledger.created)
        learned = {ACTIVITY: str(activity)} if activity is not None else {}
        return LedgerUpdate(remote_call_id=call_id, logged=command.report, remote_ids=learned)

    async def _card(self, command: CallCardChange, ledger: CallLedger) -> LedgerUpdate:
        """Bitrix24's own call card shown to (hidden from) the employees' portal users. A call
        not registered yet (a known client's: no earlier command registered it) is registered
        first, with SHOW=0, bound to whatever record the portal finds for the number. Nothing
        for a call already finished (the finish closed its card), nor a hide of a card never
        shown, nor employees without a portal user."""
        if ledger.logged is not None:
            return NOTHING_LEARNED
        users = sorted({user for employee in command.employees if (user := self.directory.user_of(employee))})
        if not users:
            return NOTHING_LEARNED
        call_id = ledger.remote_call_id
        if call_id is None:
            if not command.show:
                return NOTHING_LEARNED
            call_id = (await self.operations.register_call(CallToRegister(
                command.linkedid, command.direction, command.phone, command.line, user_id=users[0]))).call_id
        if command.show:
            await self.operations.show_card(call_id, users)
        else:
            await self.operations.hide_card(call_id, users)
        log.info("bitrix24 %s: call %s card %s %s", self.client.host, command.linkedid,
                 "shown to" if command.show else "hidden from", ", ".join(command.employees))
        return LedgerUpdate(remote_call_id=call_id)

    async def _responsible(self, command: ChangeResponsible, ledger: CallLedger) -> LedgerUpdate:
        if ledger.created is None:
            return NOTHING_LEARNED  # a known client's records are never reassigned (R10)
        user = self.directory.user_of(command.employee)
        if user is None:
            raise CrmRejected(f"employee {command.employee} has no Bitrix24 user (set crm_user)")
        refs = sorted(set(ledger.created.all), key=str)
        updates = [responsible_command(f"r{index}", ref.type, int(ledger.remote_ids.get(str(ref), ref.id)), user)
                   for index, ref in enumerate(refs)]
        if self._cache is not None:
            for ref in refs:
                self._cache.forget_entity(ref.type, ref.id)
        _checked(await self.client.batch(updates))
        log.info("bitrix24 %s: %s now responsible for %s", self.client.host, command.employee,
                 ", ".join(map(str, refs)))
        return NOTHING_LEARNED


def _kinds(plan: RecordPlan) -> list[EntityType]:
    """The records the plan creates on the portal, the call's record last."""
    if plan.contact_only:  # the call window's "create contact"
        return [EntityType.CONTACT]
    if plan.mode is CrmMode.CLASSIC:
        return [EntityType.LEAD]
    partner = EntityType.COMPANY if plan.create_with is CreateWith.COMPANY else EntityType.CONTACT
    return [partner, EntityType.DEAL]


def _created(refs: dict[EntityType, EntityRef]) -> CreatedRecords:
    if EntityType.LEAD in refs:
        return CreatedRecords(refs[EntityType.LEAD])
    if EntityType.DEAL not in refs:  # a contact alone stands in the lead's place
        contact = refs[EntityType.CONTACT]
        return CreatedRecords(contact, contact=contact)
    deal = refs[EntityType.DEAL]
    return CreatedRecords(lead=deal, deal=deal, contact=refs.get(EntityType.CONTACT),
                          company=refs.get(EntityType.COMPANY))


def _who(record: CallRecord) -> str | None:
    """Who the call is finished for: the last transfer target, else who answered, else the
    employee who called or was rung first."""
    for transfer in reversed(record.transfers):
        if transfer.to_employee:
            return transfer.to_employee
    if record.answered_by:
        return record.answered_by
    if record.direction is Direction.OUTGOING and record.employees:
        return record.employees[0]
    return record.employees[0] if record.employees else None


def _checked(done: BatchResult) -> BatchResult:
    """The batch's answers, or its first failure: unavailable when any command may succeed on
    a retry, rejected otherwise."""
    if done.errors:
        errors = list(done.errors.values())
        for error in errors:
            if isinstance(error, CrmUnavailable):
                raise error
        raise errors[0]
    return done


def _activity_id(finished: Any) -> int | None:
    """telephony.externalcall.finish's CRM_ACTIVITY_ID (an answer like voximplant.statistic.get's)."""
    value = str(finished.get("CRM_ACTIVITY_ID") or "") if isinstance(finished, dict) else ""
    return int(value) if value.isdigit() and int(value) > 0 else None


def _first_id(found: Any) -> int | None:
    if not isinstance(found, list):
        return None
    ids = [int(item["ID"]) for item in found if isinstance(item, dict) and str(item.get("ID", "")).isdigit()]
    return min(ids) if ids else None


def _id_of(answer: Any, kind: EntityType) -> int:
    if not str(answer).isdigit():
        raise CrmRejected(f"crm.{kind.value}.add: malformed answer")
    return int(answer)


def _known(found: Any) -> EntityRef | None:
    if not isinstance(found, list):
        return None
    for item in found:
        if not isinstance(item, dict) or not str(item.get("CRM_ENTITY_ID", "")).isdigit():
            continue
        try:
            return EntityRef(EntityType(str(item.get("CRM_ENTITY_TYPE", "")).lower()), int(item["CRM_ENTITY_ID"]))
        except ValueError:
            continue
    return None
