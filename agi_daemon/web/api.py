"""The JSON API under /api/ (the README lists it). Same data and rules as the pages: agents
read their own calls only; admin routes need `admin: true`; writes need the X-CSRF-Token."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from . import admin, calls, crm_pages
from ..core.crm_queries import KEEP, Keep
from .auth import visible_calls
from .server import context, viewer


def routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/me", me)
    r.add_get("/api/calls/live", live_calls)
    r.add_get("/api/calls", call_log)
    r.add_get("/api/calls/{linkedid}", one_call)
    r.add_post("/api/calls/{linkedid}/records", create_for_call)
    r.add_post("/api/calls/{linkedid}/close", close_call)
    r.add_get(r"/api/records/{kind:leads|contacts|companies|deals}", records)
    r.add_get(r"/api/records/{type:lead|contact|company|deal}/" + crm_pages.ID, record)
    r.add_post(r"/api/records/{type:lead|contact|company|deal}/" + crm_pages.ID, edit_record)
    r.add_post(r"/api/records/lead/" + crm_pages.ID + "/convert", convert_lead)
    r.add_get("/api/admin/lines", lines)
    r.add_get("/api/admin/simulate", simulate)
    r.add_get("/api/admin/calls-per-hour", per_hour)
    r.add_get("/api/admin/links", links)


async def me(request: web.Request) -> web.Response:
    who = viewer(request)
    return web.json_response({"employee": who.employee, "name": who.name, "admin": who.admin, "csrf": who.csrf})


async def live_calls(request: web.Request) -> web.Response:
    return web.json_response(await calls.cards(context(request), viewer(request)))


async def close_call(request: web.Request) -> web.Response:
    calls.close_card(request)
    return web.json_response({"closed": request.match_info["linkedid"]})


async def call_log(request: web.Request) -> web.Response:
    who = viewer(request)
    found = await crm_pages.pages_of(request).calls(crm_pages.call_filter(request, who))
    return web.json_response(visible_calls(who, found))


async def one_call(request: web.Request) -> web.Response:
    found = await crm_pages.pages_of(request).call(request.match_info["linkedid"], request.query.get("pbx"))
    if found is None or not visible_calls(viewer(request), [found]):
        raise web.HTTPNotFound(text='{"error": "no such call"}', content_type="application/json")
    return web.json_response(found)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's body, a JSON object; 400 saying so for anything else (not JSON, not
    UTF-8, a list, a string)."""
    try:
        body = await request.json()
    except (ValueError, LookupError):  # JSONDecodeError, UnicodeDecodeError; a charset Python does not know
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body is not a JSON object")
    return body


async def create_for_call(request: web.Request) -> web.Response:
    body = await json_object(request)
    ref = await calls.create_records(context(request), viewer(request), request.match_info["linkedid"],
                                     str(body.get("kind", "")), str(body.get("name", "")))
    return web.json_response({"created": str(ref)}, status=201)


async def records(request: web.Request) -> web.Response:
    kind = crm_pages.LISTS[request.match_info["kind"]]
    return web.json_response(await crm_pages.pages_of(request).records(kind, crm_pages.record_filter(request)))


async def record(request: web.Request) -> web.Response:
    found = await crm_pages.pages_of(request).entity(crm_pages.entity_ref(request))
    if found is None:
        raise web.HTTPNotFound(text='{"error": "no such record"}', content_type="application/json")
    entity, its_calls = found
    return web.json_response({**entity, "calls": visible_calls(viewer(request), its_calls)})


async def edit_record(request: web.Request) -> web.Response:
    """{name, responsible}: a field left out keeps its value; `"responsible": null` clears it."""
    ref = crm_pages.entity_ref(request)
    body = await json_object(request)
    crm_pages.pages_of(request)
    name, responsible = body.get("name"), body.get("responsible", KEEP)
    if "name" in body and not isinstance(name, str):
        raise web.HTTPBadRequest(text='{"error": "name: text expected"}', content_type="application/json")
    if responsible is not None and not isinstance(responsible, (str, Keep)):
        raise web.HTTPBadRequest(text='{"error": "responsible: an employee id or null expected"}',
                                 content_type="application/json")
    await crm_pages.update_record(context(request), ref, name, responsible or None)
    return web.json_response({"updated": str(ref)})


async def convert_lead(request: web.Request) -> web.Response:
    crm_pages.pages_of(request)
    contact, deal = await crm_pages.convert(context(request), crm_pages.record_id(request))
    return web.json_response({"contact": str(contact), "deal": str(deal)})


async def lines(request: web.Request) -> web.Response:
    return web.json_response(admin.lines_view(context(request)))


async def simulate(request: web.Request) -> web.Response:
    q = request.query
    result = await admin.simulate_call(context(request), q.get("direction", ""), q.get("line", ""),
                                       q.get("caller", ""), q.get("callee") or None)
    refused = result["json"].get("status") == "refused"  # arguments that describe no call of this config
    return web.json_response(result["json"], status=422 if refused else 200)


async def per_hour(request: web.Request) -> web.Response:
    hours = await admin.calls_per_hour(context(request))
    return web.json_response([{"hour": h.isoformat(), "answered": a, "not_answered": m} for h, a, m in hours])


async def links(request: web.Request) -> web.Response:
    serving, found = context(request).health()
    return web.json_response({"fastagi_serving": serving, **found})
