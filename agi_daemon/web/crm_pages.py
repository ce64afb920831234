"""The CRM pages (embedded CRM): leads, contacts, companies, deals by pipeline and the call
log, with filters; a record's page with its calls; edit name and responsible; convert a lead."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from ..core.model import CrmMode, EntityRef, EntityType
from ..core.phone import InvalidPhone, to_e164
from ..core.ports import CrmError, CrmRejected
from ..core.crm_queries import CallFilter, Keep, RecordFilter
from .auth import Viewer, visible_calls
from .server import WebContext, context, render, viewer

LISTS = {"leads": EntityType.LEAD, "contacts": EntityType.CONTACT, "companies": EntityType.COMPANY,
         "deals": EntityType.DEAL}
ID = r"{id:[0-9]+}"  # a record's id in a route (ASCII digits); record_id() reads it
MAX_ID = 2**31 - 1  # the largest record id: the tables' INTEGER ids (PostgreSQL refuses a larger one as out of range)


def routes(app: web.Application) -> None:
    app.router.add_get("/crm", crm_home)
    app.router.add_get("/crm/calls", call_log_page)
    app.router.add_get(r"/crm/{kind:leads|contacts|companies|deals}", records_page)
    app.router.add_get(r"/crm/{type:lead|contact|company|deal}/" + ID, entity_page)
    app.router.add_post(r"/crm/{type:lead|contact|company|deal}/" + ID, edit_entity)
    app.router.add_post(r"/crm/lead/" + ID + "/convert", convert_lead)


async def crm_home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/crm/calls")


def pages_of(request: web.Request):
    pages = context(request).pages
    if pages is None:
        raise web.HTTPNotFound(text="the CRM pages need the embedded CRM (crm.adapter: embedded)")
    return pages


def no_such_record(request: web.Request) -> web.HTTPNotFound:
    if request.path.startswith("/api/"):
        return web.HTTPNotFound(text='{"error": "no such record"}', content_type="application/json")
    return web.HTTPNotFound(text="no such record")


def record_id(request: web.Request) -> int:
    """The route's {id}, for every route that names a record (pages and API): 404 for digits
    no record has, such as 0, or a number past MAX_ID (or past int()'s 4,300 digits)."""
    digits = request.match_info["id"].lstrip("0")
    if not digits or len(digits) > len(str(MAX_ID)) or int(digits) > MAX_ID:
        raise no_such_record(request)
    return int(digits)


def entity_ref(request: web.Request) -> EntityRef:
    """The record a {type}/{id} route names."""
    return EntityRef(EntityType(request.match_info["type"]), record_id(request))


def _phone(ctx: WebContext, text: str | None) -> str | None:
    if not text:
        return None
    try:
        return to_e164(text, ctx.rules().default_region)
    except InvalidPhone:
        raise web.HTTPBadRequest(text=f"not a phone number: {text}") from None


def _day(request: web.Request, parameter: str, *, end: bool = False) -> datetime | None:
    """A date filter ("2026-12-01"), as a UTC moment; `end` makes it exclusive at the end of
    that day. 400 naming the parameter for a date that cannot be read or is out of range
    (9999-12-31 has no next day)."""
    text = request.query.get(parameter)
    if not text:
        return None
    try:
        day = datetime.fromisoformat(text)
        day = (day if day.tzinfo else day.replace(tzinfo=UTC)).astimezone(UTC)
        return day + timedelta(days=1) if end and len(text) <= 10 else day
    except (ValueError, OverflowError):
        raise web.HTTPBadRequest(text=f"{parameter}: not a date that can be read: {text}") from None


def record_filter(request: web.Request) -> RecordFilter:
    q = request.query
    return RecordFilter(phone=_phone(context(request), q.get("phone")), responsible=q.get("responsible") or None,
                        pipeline=q.get("pipeline") or None, since=_day(request, "from"),
                        until=_day(request, "to", end=True))


def call_filter(request: web.Request, who: Viewer) -> CallFilter:
    """Agents see their own calls only, whatever they ask; admins may filter by employee."""
    q = request.query
    employee = (q.get("employee") or None) if who.admin else who.employee
    return CallFilter(phone=_phone(context(request), q.get("phone")), employee=employee,
                      line=_phone(context(request), q.get("line")), since=_day(request, "from"),
                      until=_day(request, "to", end=True))


async def records_page(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    records = await pages_of(request).records(LISTS[kind], record_filter(request))
    return render(request, "crm_list.html", kind=kind, records=records, query=request.query,
                  pipelines=_pipelines(context(request)))


async def call_log_page(request: web.Request) -> web.Response:
    who = viewer(request)
    found = visible_calls(who, await pages_of(request).calls(call_filter(request, who)))
    return render(request, "crm_calls.html", kind="calls", calls=found, query=request.query)


def _pipelines(ctx: WebContext) -> list[str]:
    return [ctx.rules().crm.pipeline]


async def entity_page(request: web.Request) -> web.Response:
    ref = entity_ref(request)
    found = await pages_of(request).entity(ref)
    if found is None:
        raise web.HTTPNotFound(text=f"no {ref}")
    record, calls = found
    rules = context(request).rules()
    return render(request, "entity.html", ref=ref, record=record, calls=visible_calls(viewer(request), calls),
                  can_convert=ref.type is EntityType.LEAD and record["status"] == "NEW" and rules.crm.mode is CrmMode.CLASSIC,
                  saved=request.query.get("saved"))


async def edit_entity(request: web.Request) -> web.Response:
    ref = entity_ref(request)
    form = await request.post()
    await update_record(context(request), ref, str(form.get("name", "")), str(form.get("responsible", "")) or None)
    raise web.HTTPSeeOther(f"/crm/{ref.type.value}/{ref.id}?saved=1")


async def update_record(ctx: WebContext, ref: EntityRef, name: str | None, responsible: str | None | Keep) -> None:
    """An edit (the record's form, the API): `name` None and `responsible` KEEP leave them as
    they are; an employee given must be one of the config's (one already responsible and left
    as it is need not: they may have left the file since)."""
    if isinstance(responsible, str) and responsible not in ctx.rules().employees:
        raise web.HTTPBadRequest(text=f"not an employee: {responsible}")
    try:
        await ctx.pages.update(ref, name=name, responsible=responsible)
    except CrmRejected as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except CrmError as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None


async def convert_lead(request: web.Request) -> web.Response:
    contact, _ = await convert(context(request), record_id(request))
    raise web.HTTPSeeOther(f"/crm/contact/{contact.id}")


async def convert(ctx: WebContext, lead_id: int) -> tuple[EntityRef, EntityRef]:
    rules = ctx.rules()
    if rules.crm.mode is not CrmMode.CLASSIC:
        raise web.HTTPConflict(text="leads are converted at once in simple mode")
    try:
        return await ctx.pages.convert_lead(lead_id, rules.crm.pipeline)
    except CrmRejected as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    except CrmError as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None
