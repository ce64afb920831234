"""The admin pages: the lines and their CRM rules as the daemon understood them (no secret is
shown), the decision simulator (the same function as `agi-daemon simulate`), the links to
Asterisk and the CRM, and the calls per hour over the last 24 h."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..core.ports import CrmError
from .chart import calls_per_hour_svg
from .i18n import translator
from .server import WebContext, context, language, render


def routes(app: web.Application) -> None:
    app.router.add_get("/admin", admin_page)
    app.router.add_post("/admin/outbox/{id:[0-9]+}/retry", retry_command)


async def outbox_view(ctx: WebContext) -> dict[str, Any] | None:
    """The outbox section: how many CRM commands wait, the oldest's age, the dead letters."""
    if ctx.outbox is None:
        return None
    try:
        rows = await ctx.outbox.listing()
        state = await ctx.outbox.refresh()
    except CrmError:
        rows, state = [], ctx.outbox.state
    return {"pending": state.pending, "oldest": round(state.oldest_pending_seconds), "dead": state.dead,
            "dead_letters": [row for row in rows if row["status"] == "dead"][:50]}


async def retry_command(request: web.Request) -> web.Response:
    ctx = context(request)
    if ctx.outbox is None or not await ctx.outbox.retry(int(request.match_info["id"])):
        raise web.HTTPNotFound(text="no such dead letter")
    raise web.HTTPSeeOther("/admin#outbox")


def lines_view(ctx: WebContext) -> list[dict[str, Any]]:
    rules = ctx.rules()
    found = []
    for line in rules.lines.values():
        group = rules.queue_groups.get(line.queue_group)
        found.append({
            "number": line.number, "name": line.name, "queue_group": line.queue_group,
            "members": list(group.members) if group else [], "strategy": group.strategy.value if group else None,
            "ring_seconds": group.ring_seconds if group else None,
            "crm": {"unknown_caller": line.crm.unknown_caller.value, "create_for": line.crm.create_for.value,
                    "source": line.crm.source, "route_known_to_responsible": line.crm.route_known_to_responsible,
                    "responsible_ring_seconds": line.crm.responsible_ring_seconds,
                    "reassign_on_manual_transfer": line.crm.reassign_on_manual_transfer},
        })
    return found


async def simulate_call(ctx: WebContext, direction: str, line: str, caller: str, callee: str | None) -> dict[str, Any]:
    """What `agi-daemon simulate --json` prints for the same call, and its text form."""
    if direction not in ("incoming", "outgoing"):
        raise web.HTTPBadRequest(text="direction must be incoming or outgoing")
    try:
        as_json, as_text = await ctx.simulate(direction, line, caller, callee)
    except CrmError as exc:
        raise web.HTTPServiceUnavailable(text=f"the CRM lookup failed: {exc}") from None
    return {"json": as_json, "text": as_text}


async def calls_per_hour(ctx: WebContext) -> list[tuple[datetime, int, int]]:
    if ctx.pages is None:
        return []
    return await ctx.pages.calls_per_hour(datetime.now(UTC))


async def admin_page(request: web.Request) -> web.Response:
    ctx = context(request)
    q = request.query
    result = None
    if q.get("direction"):
        result = await simulate_call(ctx, q["direction"], q.get("line", ""), q.get("caller", ""), q.get("callee") or None)
    t = translator(language(request))
    hours = await calls_per_hour(ctx)
    chart = calls_per_hour_svg(hours, answered_label=t("answered"), missed_label=t("not answered"))
    serving, links = ctx.health()
    return render(request, "admin.html", lines=lines_view(ctx), simulation=result, query=q, chart=chart,
                  links=links, serving=serving, outbox=await outbox_view(ctx), totals=(sum(a for _, a, _ in hours), sum(m for _, _, m in hours)))
