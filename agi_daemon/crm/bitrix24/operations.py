"""What the daemon does on a Bitrix24 portal, in the admin's words, over `Bitrix24Client`.

Each write also exists as a `Command` builder (`*_command`), so a caller can coalesce several
writes in one `batch` and chain them with "$result[name]" (create a lead, then register the
call on it). Employees map to portal users by their `crm_user`, or else by the user's internal
phone (UF_PHONE_INNER) equal to the employee's extension (`EmployeeDirectory.load`).

Idempotency on the portal's side: a call is registered with EXTERNAL_CALL_ID = the Asterisk
linkedid (the portal answers the same CALL_ID for it); a record is created with ORIGIN_ID = the
caller's idempotency key, and `create_record(..., look_first=True)` (after a failure that may
have reached the portal) finds it again with crm.<type>.list instead of creating it twice.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from agi_daemon.core.crm_errors import RemoteCrmRejected, RemoteCrmUnavailable
from agi_daemon.core.model import CrmMode, Direction, Disposition, EntityType
from agi_daemon.core.phone import masked
from agi_daemon.core.ports import CrmUnavailable

from .client import Bitrix24Client, Command

if TYPE_CHECKING:
    from .cache import LookupCache

log = logging.getLogger(__name__)

_PORTAL_MODES = {1: CrmMode.CLASSIC, 2: CrmMode.SIMPLE}
ENTITY_TYPE_IDS = {EntityType.LEAD: 1, EntityType.DEAL: 2, EntityType.CONTACT: 3, EntityType.COMPANY: 4}


class FinishStatus(StrEnum):
    """telephony.externalcall.finish STATUS_CODE."""

    ANSWERED = "200"
    MISSED = "304"
    BUSY = "486"
    CANCELLED = "603-S"  # the caller hung up before anyone answered
    OTHER = "OTHER"


def finish_status(disposition: Disposition, *, cancelled_by_caller: bool = False) -> FinishStatus:
    if disposition is Disposition.ANSWERED:
        return FinishStatus.ANSWERED
    if disposition is Disposition.BUSY:
        return FinishStatus.BUSY
    if disposition is Disposition.MISSED:
        return FinishStatus.CANCELLED if cancelled_by_caller else FinishStatus.MISSED
    return FinishStatus.OTHER


# ---- employees <-> portal users ----------------------------------------------------------

@dataclass(frozen=True)
class EmployeeLink:
    """How an employee of the config is found on the portal."""

    employee: str
    crm_user: int | None = None
    extension: str | None = None


class EmployeeDirectory:
    def __init__(self, employees: Iterable[EmployeeLink]) -> None:
        self._links = {link.employee: link for link in employees}
        self._user_of: dict[str, int] = {e: link.crm_user for e, link in self._links.items() if link.crm_user is not None}
        self.unmatched: tuple[str, ...] = ()

    async def load(self, client: Bitrix24Client) -> None:
        """Find the users of the employees without `crm_user` by their internal phone
        (one `user.get` per employee, 50 to a batch request). Raises the failure of a read
        (unavailable first, as a retry may fix it) after keeping the users it did find: a
        failed read is no "nobody has this phone", so the caller reads them again later."""
        wanted = [link for link in self._links.values() if link.crm_user is None and link.extension]
        commands = [Command(f"u{index}", "user.get", {"FILTER": {"UF_PHONE_INNER": link.extension, "ACTIVE": True}})
                    for index, link in enumerate(wanted)]
        done = await client.batch(commands) if commands else None
        unmatched = []
        for index, link in enumerate(wanted):
            if done and f"u{index}" in done.errors:
                continue  # not read: raised below
            users = done.results.get(f"u{index}") if done else None
            if isinstance(users, list) and users and isinstance(users[0], dict) and str(users[0].get("ID", "")).isdigit():
                self._user_of[link.employee] = int(users[0]["ID"])
            else:
                unmatched.append(link.employee)
        if done and done.errors:  # `batch` keeps its failures instead of raising them
            errors = list(done.errors.values())
            raise next((error for error in errors if isinstance(error, CrmUnavailable)), errors[0])
        unmatched += [e for e, link in self._links.items() if link.crm_user is None and not link.extension]
        self.unmatched = tuple(sorted(unmatched))
        if self.unmatched:
            log.warning("bitrix24: no portal user for employees %s (set crm_user, or the user's internal phone "
                        "to the extension)", ", ".join(self.unmatched))

    async def renew(self, employees: Iterable[EmployeeLink], client: Bitrix24Client | None) -> None:
        """The employees of a reloaded config: their users found first (as `load`, when a
        client is given), then all taken at once, so no delivery meanwhile sees half of them."""
        fresh = EmployeeDirectory(employees)
        if client is not None:
            await fresh.load(client)
        self._links, self._user_of, self.unmatched = fresh._links, fresh._user_of, fresh.unmatched

    def user_of(self, employee: str) -> int | None:
        return self._user_of.get(employee)

    def employee_of(self, user_id: int | str | None) -> str | None:
        if user_id is None:
            return None
        for employee, user in self._user_of.items():
            if str(user) == str(user_id):
                return employee
        return None


# ---- values in and out -------------------------------------------------------------------

@dataclass(frozen=True)
class KnownClient:
    """A client the portal knows: the first entity searchCrmEntities returned."""

    entity: EntityType
    entity_id: int
    assigned_by_id: int | None
    responsible: str | None  # the employee whose portal user is ASSIGNED_BY_ID


@dataclass(frozen=True)
class CallToRegister:
    linkedid: str  # EXTERNAL_CALL_ID: one portal call per physical call
    direction: Direction
    phone: str  # the external number, E.164
    line: str  # LINE_NUMBER
    user_id: int | None = None  # who the card is for (or user_phone_inner)
    user_phone_inner: str | None = None
    create: bool = False  # CRM_CREATE: let the portal create a lead for an unknown number
    source: str | None = None  # CRM_SOURCE
    show: bool = False  # SHOW: the portal's call card
    entity: EntityType | None = None  # CRM_ENTITY_TYPE / CRM_ENTITY_ID: bind to this record
    entity_id: int | str | None = None  # an id, or "$result[name]" inside a batch
    started_at: str | None = None  # CALL_START_DATE, ISO 8601


@dataclass(frozen=True)
class RegisteredCall:
    call_id: str
    entity: EntityType | None
    entity_id: int | None
    created_lead: int | None


@dataclass(frozen=True)
class CallToFinish:
    call_id: str
    duration_seconds: int
    status: FinishStatus
    user_id: int | None = None
    user_phone_inner: str | None = None


@dataclass(frozen=True)
class NewRecord:
    """A record to create. `origin_id` is the idempotency key (ORIGIN_ID on the portal);
    `links` are other fields such as CONTACT_ID="$result[contact]" for a deal."""

    entity: EntityType
    title: str
    origin_id: str
    source: str
    assigned_by_id: int | None = None
    phone: str | None = None
    category_id: int | None = None  # a deal's pipeline
    links: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"TITLE": self.title, "SOURCE_ID": self.source, "ORIGIN_ID": self.origin_id}
        if self.entity in (EntityType.CONTACT, EntityType.LEAD):
            fields["NAME"] = self.title
        if self.assigned_by_id is not None:
            fields["ASSIGNED_BY_ID"] = self.assigned_by_id
        if self.phone and self.entity is not EntityType.DEAL:
            fields["PHONE"] = [{"VALUE": self.phone, "VALUE_TYPE": "WORK"}]
        if self.entity is EntityType.DEAL:
            fields["CATEGORY_ID"] = self.category_id or 0
        fields.update(self.links)
        return fields


# ---- commands ----------------------------------------------------------------------------

def create_command(name: str, record: NewRecord) -> Command:
    return Command(name, f"crm.{record.entity.value}.add", {"fields": record.fields(),
                                                            "params": {"REGISTER_SONET_EVENT": "N"}})


def register_command(name: str, call: CallToRegister) -> Command:
    params: dict[str, Any] = {
        "PHONE_NUMBER": call.phone,
        "TYPE": 2 if call.direction is Direction.INCOMING else 1,
        "LINE_NUMBER": call.line,
        "EXTERNAL_CALL_ID": call.linkedid,
        "CRM_CREATE": 1 if call.create else 0,
        "SHOW": 1 if call.show else 0,
    }
    if call.user_id is not None:
        params["USER_ID"] = call.user_id
    elif call.user_phone_inner:
        params["USER_PHONE_INNER"] = call.user_phone_inner
    else:
        raise ValueError("a call is registered for a portal user: user_id or user_phone_inner")
    if call.source:
        params["CRM_SOURCE"] = call.source
    if call.entity is not None and call.entity_id is not None:
        params["CRM_ENTITY_TYPE"] = call.entity.value.upper()
        params["CRM_ENTITY_ID"] = call.entity_id
    if call.started_at:
        params["CALL_START_DATE"] = call.started_at
    return Command(name, "telephony.externalcall.register", params)


def finish_command(name: str, finish: CallToFinish) -> Command:
    params: dict[str, Any] = {"CALL_ID": finish.call_id, "DURATION": max(0, int(finish.duration_seconds)),
                              "STATUS_CODE": finish.status.value}
    if finish.user_id is not None:
        params["USER_ID"] = finish.user_id
    elif finish.user_phone_inner:
        params["USER_PHONE_INNER"] = finish.user_phone_inner
    else:
        raise ValueError("a call is finished for a portal user: user_id or user_phone_inner")
    return Command(name, "telephony.externalcall.finish", params)


def responsible_command(name: str, entity: EntityType, entity_id: int, user_id: int) -> Command:
    return Command(name, f"crm.{entity.value}.update", {"id": entity_id, "fields": {"ASSIGNED_BY_ID": user_id}})


def binding_command(name: str, activity_id: int, entity: EntityType, entity_id: int) -> Command:
    """crm.activity.binding.add: one more record the call's activity shows on."""
    return Command(name, "crm.activity.binding.add", {"activityId": activity_id,
                                                      "entityTypeId": ENTITY_TYPE_IDS[entity],
                                                      "entityId": entity_id})


def card_command(name: str, call_id: str, user_ids: Sequence[int], *, show: bool) -> Command:
    method = "telephony.externalcall.show" if show else "telephony.externalcall.hide"
    return Command(name, method, {"CALL_ID": call_id, "USER_ID": list(user_ids)})


# ---- operations --------------------------------------------------------------------------

class Bitrix24Operations:
    def __init__(self, client: Bitrix24Client, employees: EmployeeDirectory, cache: LookupCache | None = None) -> None:
        self.client = client
        self.employees = employees
        self.cache = cache

    async def find_client(self, phone: str, deadline_seconds: float | None = None) -> KnownClient | None:
        """The client with this E.164 number (contact, company, then lead, in the portal's
        order), with its responsible mapped back to an employee; None for a new number.
        Within `deadline_seconds` (daemon.crm_deadline_ms), or RemoteCrmUnavailable: the call
        does not wait longer for the portal."""
        if self.cache is not None:
            known, client = self.cache.get(phone)
            if known:
                return client
        try:
            async with asyncio.timeout(deadline_seconds):
                found = await self.client.call("telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": phone},
                                               urgent=True)
        except TimeoutError:
            raise RemoteCrmUnavailable(f"{self.client.host} telephony.externalCall.searchCrmEntities: no answer "
                                       f"within {(deadline_seconds or 0) * 1000:.0f} ms") from None
        if not isinstance(found, list):
            raise RemoteCrmRejected(f"{self.client.host} telephony.externalCall.searchCrmEntities: malformed answer")
        for item in found:
            entity = _entity(item.get("CRM_ENTITY_TYPE")) if isinstance(item, dict) else None
            if entity is None or not str(item.get("CRM_ENTITY_ID", "")).isdigit():
                continue
            assigned = item.get("ASSIGNED_BY_ID")
            assigned_id = int(assigned) if str(assigned or "").isdigit() else None
            log.debug("bitrix24 %s: %s is %s %s", self.client.host, masked(phone), entity.value, item["CRM_ENTITY_ID"])
            client = KnownClient(entity, int(item["CRM_ENTITY_ID"]), assigned_id, self.employees.employee_of(assigned_id))
            self._remember(phone, client)
            return client
        self._remember(phone, None)
        return None

    def _remember(self, phone: str, client: KnownClient | None) -> None:
        if self.cache is not None:
            self.cache.put(phone, client)

    async def find_by_duplicates(self, phone: str) -> list[tuple[EntityType, int]]:
        """Every lead, contact and company with this number (crm.duplicate.findbycomm)."""
        found = await self.client.call("crm.duplicate.findbycomm", {"type": "PHONE", "values": [phone]})
        if isinstance(found, list):  # PHP's empty array: nothing found
            return []
        if not isinstance(found, dict):
            raise RemoteCrmRejected(f"{self.client.host} crm.duplicate.findbycomm: malformed answer")
        return [(entity, int(record_id)) for key, ids in found.items()
                if (entity := _entity(key)) is not None for record_id in ids]

    async def register_call(self, call: CallToRegister) -> RegisteredCall:
        answer = registered(await self.client.call("telephony.externalcall.register",
                                                   register_command("call", call).params), self.client.host)
        log.info("bitrix24 %s: call %s (%s %s) registered as %s", self.client.host, call.linkedid,
                 call.direction.value, masked(call.phone), answer.call_id)
        return answer

    async def finish_call(self, finish: CallToFinish) -> None:
        await self.client.call("telephony.externalcall.finish", finish_command("finish", finish).params)
        log.info("bitrix24 %s: call %s finished (%s, %d s)", self.client.host, finish.call_id, finish.status.value,
                 finish.duration_seconds)

    async def find_by_origin(self, entity: EntityType, origin_id: str) -> int | None:
        found = await self.client.call(f"crm.{entity.value}.list",
                                       {"filter": {"ORIGIN_ID": origin_id}, "select": ["ID"]})
        if not isinstance(found, list):
            raise RemoteCrmRejected(f"{self.client.host} crm.{entity.value}.list: malformed answer")
        ids = [int(item["ID"]) for item in found if isinstance(item, dict) and str(item.get("ID", "")).isdigit()]
        return min(ids) if ids else None

    async def create_record(self, record: NewRecord, *, look_first: bool = False) -> int:
        """Create the record; with `look_first` (an earlier attempt failed in a way that may
        have reached the portal), the record already created under this ORIGIN_ID is returned."""
        if self.cache is not None and record.phone:
            self.cache.forget_phone(record.phone)
        if look_first:
            existing = await self.find_by_origin(record.entity, record.origin_id)
            if existing is not None:
                return existing
        created = await self.client.call(f"crm.{record.entity.value}.add", create_command("r", record).params)
        if self.cache is not None and record.phone:
            self.cache.forget_phone(record.phone)  # a lookup may have remembered "unknown" meanwhile
        if not str(created).isdigit():
            raise RemoteCrmRejected(f"{self.client.host} crm.{record.entity.value}.add: malformed answer")
        return int(created)

    async def set_responsible(self, entity: EntityType, entity_id: int, user_id: int) -> None:
        if self.cache is not None:
            self.cache.forget_entity(entity, entity_id)
        await self.client.call(f"crm.{entity.value}.update",
                               responsible_command("r", entity, entity_id, user_id).params)

    async def bind_activity(self, activity_id: int, records: Sequence[tuple[EntityType, int]]) -> list[tuple[EntityType, int]]:
        """The call's CRM activity bound to each of `records` it is not bound to yet
        (crm.activity.binding.list first, so a repeated delivery binds nothing twice); the
        bindings added."""
        listed = await self.client.call("crm.activity.binding.list", {"activityId": activity_id})
        if not isinstance(listed, list):
            raise RemoteCrmRejected(f"{self.client.host} crm.activity.binding.list: malformed answer")
        bound = {(str(item.get("entityTypeId")), str(item.get("entityId"))) for item in listed if isinstance(item, dict)}
        missing = [(entity, entity_id) for entity, entity_id in dict.fromkeys(records)
                   if (str(ENTITY_TYPE_IDS[entity]), str(entity_id)) not in bound]
        if missing:
            done = await self.client.batch([binding_command(f"b{index}", activity_id, entity, entity_id)
                                            for index, (entity, entity_id) in enumerate(missing)])
            errors = list(done.errors.values())
            if errors:  # what a retry may fix first
                raise next((error for error in errors if isinstance(error, CrmUnavailable)), errors[0])
        return missing

    async def show_card(self, call_id: str, user_ids: Sequence[int]) -> None:
        await self.client.call("telephony.externalcall.show", card_command("c", call_id, user_ids, show=True).params)

    async def hide_card(self, call_id: str, user_ids: Sequence[int]) -> None:
        await self.client.call("telephony.externalcall.hide", card_command("c", call_id, user_ids, show=False).params)

    async def crm_mode(self) -> CrmMode:
        mode = await self.client.call("crm.settings.mode.get")
        if str(mode) not in ("1", "2"):
            raise RemoteCrmRejected(f"{self.client.host} crm.settings.mode.get: unexpected answer")
        return _PORTAL_MODES[int(mode)]

    async def mode_mismatch(self, configured: CrmMode) -> str | None:
        """None when the portal's CRM mode is the config's `crm.mode`; else what to fix."""
        portal = await self.crm_mode()
        if portal is configured:
            return None
        return (f"crm.mode is {configured.value} but the Bitrix24 portal {self.client.host} is in {portal.value} mode: "
                f"set crm.mode: {portal.value}, or change the portal's CRM mode")


def registered(answer: Any, host: str = "portal") -> RegisteredCall:
    """telephony.externalcall.register's answer."""
    if not isinstance(answer, dict) or not answer.get("CALL_ID"):
        raise RemoteCrmRejected(f"{host} telephony.externalcall.register: malformed answer (no CALL_ID)")
    entity_id = answer.get("CRM_ENTITY_ID")
    lead = answer.get("CRM_CREATED_LEAD")
    return RegisteredCall(str(answer["CALL_ID"]), _entity(answer.get("CRM_ENTITY_TYPE")),
                          _id(entity_id), _id(lead))


def _id(value: Any) -> int | None:
    return int(value) if value is not None and str(value).isdigit() else None


def _entity(value: Any) -> EntityType | None:
    try:
        return EntityType(str(value).lower())
    except ValueError:
        return None
