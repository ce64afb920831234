"""The CRM pages (embedded CRM): leads, contacts, companies, deals by pipeline and the call
log, with filters; a record's page with its calls; edit name and responsible; convert a lead."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from ..core.model import CrmMode, EntityRef, EntityType
from ..core.phone import InvalidPhone, to_e164
from ..core.ports import CrmError, CrmRejected
from ..core.crm_queries import CallFilter, RecordFilter
from .auth import Viewer
from .server import WebContext, context, render, viewer

LISTS = {"leads": EntityType.LEAD, "contacts": EntityType.CONTACT, "companies": EntityType.COMPANY,
         "deals": EntityType.DEAL}


def routes(app: web.Application) -> None:
    app.router.add_get("/crm", crm_home)
    app.router.add_get("/crm/calls", call_log_page)
    app.router.add_get(r"/crm/{kind:leads|contacts|companies|deals}", records_page)
    app.router.add_get(r"/crm/{type:lead|contact|company|deal}/{id:\d+}", entity_page)
    app.router.add_post(r"/crm/{type:lead|contact|company|deal}/{id:\d+}", edit_entity)
    app.router.add_post(r"/crm/lead/{id:\d+}/convert", convert_lead)


async def crm_home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/crm/calls")


def pages_of(request: web.Request):
    pages = context(request).pages
    if pages is None:
        raise web.HTTPNotFound(text="the CRM pages need the embedded CRM (crm.adapter: embedded)")
    return pages


def _phone(ctx: WebContext, text: str | None) -> str | None:
    if not text:
        return None
    try:
        return to_e164(text, ctx.rules().default_region)
    except InvalidPhone:
        raise web.HTTPBadRequest(text=f"not a phone number: {text}") from None


def _day(text: str | None, *, end: bool = False) -> datetime | None:
    """A date filter ("2026-12-01"); `end` makes it exclusive at the end of that day."""
    if not text:
        return None
    try:
        day = datetime.fromisoformat(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"not a date: {text}") from None
    day = day if day.tzinfo else day.replace(tzinfo=UTC)
    return day + timedelta(days=1) if end and len(text) <= 10 else day


def record_filter(request: web.Request) -> RecordFilter:
    q = request.query
    return RecordFilter(phone=_phone(context(request), q.get("phone")), responsible=q.get("responsible") or None,
                        pipeline=q.get("pipeline") or None, since=_day(q.get("from")), until=_day(q.get("to"), end=True))


def call_filter(request: web.Request, who: Viewer) -> CallFilter:
    """Agents see their own calls only, whatever they ask; admins may filter by employee."""
    q = request.query
    employee = (q.get("employee") or None) if who.admin else who.employee
    return CallFilter(phone=_phone(context(request), q.get("phone")), employee=employee,
                      line=_phone(context(request), q.get("line")), since=_day(q.get("from")),
                      until=_day(q.get("to"), end=True))


async def records_page(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    records = await pages_of(request).records(LISTS[kind], record_filter(request))
    return render(request, "crm_list.html", kind=kind, records=records, query=request.query,
                  pipelines=_pipelines(context(request)))


async def call_log_page(request: web.Request) -> web.Response:
    found = await pages_of(request).calls(call_filter(request, viewer(request)))
    return render(request, "crm_calls.html", kind="calls", calls=found, query=request.query)


def _pipelines(ctx: WebContext) -> list[str]:
    return [ctx.rules().crm.pipeline]


def visible_calls(who: Viewer, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if who.admin:
        return found
    return [c for c in found if c["answered_by"] == who.employee or who.employee in c["employees"]]


async def entity_page(request: web.Request) -> web.Response:
    ref = EntityRef(EntityType(request.match_info["type"]), int(request.match_info["id"]))
    found = await pages_of(request).entity(ref)
    if found is None:
        raise web.HTTPNotFound(text=f"no {ref}")
    record, calls = found
    rules = context(request).rules()
    return render(request, "entity.html", ref=ref, record=record, calls=visible_calls(viewer(request), calls),
                  can_convert=ref.type is EntityType.LEAD and record["status"] == "NEW" and rules.crm.mode is CrmMode.CLASSIC,
                  saved=request.query.get("saved"))


async def edit_entity(request: web.Request) -> web.Response:
    ref = EntityRef(EntityType(request.match_info["type"]), int(request.match_info["id"]))
    form = await request.post()
    await update_record(context(request), ref, str(form.get("name", "")), str(form.get("responsible", "")))
    raise web.HTTPSeeOther(f"/crm/{ref.type.value}/{ref.id}?saved=1")


async def update_record(ctx: WebContext, ref: EntityRef, name: str, responsible: str) -> None:
    if responsible and responsible not in ctx.rules().employees:
        raise web.HTTPBadRequest(text=f"not an employee: {responsible}")
    try:
        await ctx.pages.update(ref, name=name, responsible=responsible or None)
    except CrmRejected as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except CrmError as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None


async def convert_lead(request: web.Request) -> web.Response:
    contact, _ = await convert(context(request), int(request.match_info["id"]))
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
