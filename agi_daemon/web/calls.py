"""The agents' call window: a card per call ringing or answered on the agent's phone (and per
ended call whose offer is still open), redrawn over a WebSocket as the call changes, and the
offer's "create" buttons (R3)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import phonenumbers
from aiohttp import WSMsgType, web

from ..core.call_board import LiveCall
from ..core.commands import CreateCallRecords
from ..core.live_calls import RecordsCreated
from ..core.model import CrmMode, EntityRef, RecordPlan, Rules, UnknownCaller, name_too_long
from ..core.phone import masked
from ..core.ports import CrmError
from ..core.rules import CrmAccess, screen_number
from .auth import SESSION_COOKIE, Viewer, visible_calls
from .server import SESSION_OVER, SOCKETS, WebContext, context, current_viewer, render, render_fragment, viewer

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 25.0
LINK_CHECK_SECONDS = 5.0  # how soon an open call window hears that calls are (no longer) followed
LIVE_SILENCE_SECONDS = 60.0  # a live socket silent this long is taken for dead by the window (calls.js)


def routes(app: web.Application) -> None:
    app.router.add_get("/calls", call_window)
    app.router.add_get("/ws", live_updates)
    app.router.add_post("/calls/{linkedid}/create", create_from_call)
    app.router.add_post("/calls/{linkedid}/close", close_ended_call)


def display_number(number: str, region: str) -> str:
    """+33612345678 -> "06 12 34 56 78" in the daemon's region, international elsewhere."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return number
    same_region = phonenumbers.region_code_for_number(parsed) == region
    form = phonenumbers.PhoneNumberFormat.NATIONAL if same_region else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(parsed, form)


def offer_kinds(rules: Rules) -> list[str]:
    """What the offer's buttons create: classic mode a lead or a contact; simple mode a deal
    with its contact or company (no lead is visible there, R1)."""
    if rules.crm.mode is CrmMode.CLASSIC:
        return ["lead", "contact"]
    return ["deal"]


async def cards(ctx: WebContext, who: Viewer) -> list[dict[str, Any]]:
    """The calls on an employee's window, with what the CRM knows of the caller."""
    rules = ctx.rules()
    return [await card(ctx, rules, call, who) for call in ctx.live.board.calls_of(who.employee)]


async def card(ctx: WebContext, rules: Rules, call: LiveCall, who: Viewer) -> dict[str, Any]:
    line = rules.lines.get(call.line)
    entity = None
    history: list[dict[str, Any]] = []
    # R7/R8: an excluded number is never looked up, not even for the card
    allowed = screen_number(rules, call.number if call.number.startswith("+") else None).access is CrmAccess.ALLOWED
    if allowed:
        try:
            entity = await _known_as(ctx, call)
            if ctx.pages is not None:
                # an agent's own calls only, as everywhere (README, "Who sees what")
                history = visible_calls(who, await ctx.pages.last_calls(
                    call.number, 6, employee=None if who.admin else who.employee))
        except CrmError as exc:
            log.warning("call %s: the card could not read the CRM: %s", call.linkedid, exc)
    if entity is not None:
        ref = EntityRef.parse(entity["ref"])
        # the record's page is the embedded CRM's; a remote CRM's record has none here
        entity["url"] = f"/crm/{ref.type.value}/{ref.id}" if ctx.pages is not None else None
        responsible = rules.employees.get(entity["responsible"] or "")
        entity["responsible_name"] = responsible.name if responsible else None
    offering = call.offer and entity is None and line is not None and line.crm.unknown_caller is UnknownCaller.OFFER
    return {
        "linkedid": call.linkedid,
        "direction": call.direction.value,
        "line": call.line,
        "line_name": line.name if line else call.line,
        "number": call.number,
        "number_display": display_number(call.number, rules.default_region),
        "state": "ended" if call.ended else "answered" if call.answered else "ringing",
        "talking": call.talking,
        "ringing": sorted(call.ringing),
        "started_at": call.started_at.isoformat(),
        "entity": entity,
        "last_calls": [c for c in history if c["linkedid"] != call.linkedid][:5],
        "offer": offering,
        "offer_kinds": offer_kinds(rules) if offering else [],
    }


async def _known_as(ctx: WebContext, call: LiveCall) -> dict[str, Any] | None:
    """The record the card names: the one the call created, else the known client's. An
    ended call's card (kept for its offer) never asks the CRM: it is drawn again at every
    change of the window, and a remote CRM would be asked each time (a number that became
    known meanwhile is joined when the agent creates the records, not doubled)."""
    if call.record is not None and ctx.pages is not None:
        found = await ctx.pages.entity(call.record)
        if found is None:
            return None
        record = found[0]
        return {"ref": str(call.record), "name": record["name"], "responsible": record["responsible"]}
    if call.ended:
        return None if call.record is None else {"ref": str(call.record), "name": None, "responsible": None}
    match = await ctx.crm.find_by_phone(call.number)
    if match is None:
        return None
    return {"ref": str(match.entity), "name": match.name, "responsible": match.responsible}


async def call_window(request: web.Request) -> web.Response:
    who = viewer(request)
    return render(request, "calls.html", cards=await cards(context(request), who),
                  silence_ms=int(LIVE_SILENCE_SECONDS * 1000))


async def live_updates(request: web.Request) -> web.WebSocketResponse:
    """Sends {"html": the cards} now and at each change of the agent's calls."""
    who = viewer(request)
    ctx = context(request)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS)
    await ws.prepare(request)
    request.app[SOCKETS][ws] = request.cookies.get(SESSION_COOKIE, "")
    watch = ctx.live.watch(who.employee)
    try:
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(_read_until_closed(ws))
            pusher = tasks.create_task(_push(request, ws, watch, ctx, who))
            await asyncio.wait({reader, pusher}, return_when=asyncio.FIRST_COMPLETED)
            reader.cancel()
            pusher.cancel()
    except* ConnectionResetError:  # the browser went away; a cancellation (the stop) goes on up
        pass
    finally:
        ctx.live.unwatch(watch)
    return ws


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            return


async def _push(request: web.Request, ws: web.WebSocketResponse, watch, ctx: WebContext, who: Viewer) -> None:
    """Each time the agent's calls change, and at least every HEARTBEAT_SECONDS, the session
    is checked again: expired, or its employee removed from the YAML file, the socket closes
    (SESSION_OVER); an employee made admin or no longer admin gets the cards of their role.
    Every message says whether calls are followed (`tracking`: the AMI or ARI link is up),
    within LINK_CHECK_SECONDS of a change; with no change, a message every HEARTBEAT_SECONDS
    tells the browser the socket still lives (a browser never sees WebSocket pings)."""
    while not ws.closed:
        current = current_viewer(request)
        if current is None:
            await ws.close(code=SESSION_OVER, message=b"the session is over: log in again")
            return
        who = current
        found = await cards(ctx, who)
        html = render_fragment(request, "_cards.html", cards=found)
        tracking = ctx.tracking()
        await ws.send_json({"html": html, "calls": [c["linkedid"] for c in found], "tracking": tracking})
        quiet = 0.0
        while not ws.closed and current_viewer(request) == who and ctx.tracking() == tracking:
            if await watch.changed(LINK_CHECK_SECONDS):
                break
            quiet += LINK_CHECK_SECONDS
            if quiet >= HEARTBEAT_SECONDS:
                await ws.send_json({"tracking": tracking})
                quiet = 0.0


async def create_from_call(request: web.Request) -> web.Response:
    """The offer's buttons: create the records for the caller with the line's source and the
    agent as responsible (R5, R9); the call is logged on them (R12)."""
    who = viewer(request)
    form = await request.post()
    ref = await create_records(context(request), who, request.match_info["linkedid"],
                               str(form.get("kind", "")), str(form.get("name", "")))
    raise web.HTTPSeeOther(f"/calls#created-{ref.type.value}-{ref.id}")


def close_card(request: web.Request) -> None:
    """An ended call's card (kept for its offer, or naming what was made of it) leaves the
    agent's window; 404 for a call in progress, or not on their window."""
    if not context(request).live.close(request.match_info["linkedid"], viewer(request).employee):
        raise web.HTTPNotFound(text="no ended call of that id on your window")


async def close_ended_call(request: web.Request) -> web.Response:
    """The card's "Close": back to the window, also when the card left it meanwhile (another
    agent made the records, a redraw not yet shown)."""
    try:
        close_card(request)
    except web.HTTPNotFound:
        pass
    raise web.HTTPSeeOther("/calls")


CREATED_WAIT_S = 5.0  # how long the button waits for the command to be stored and the records created


class NotStored(Exception):
    """The CRM command could not even be stored within CREATED_WAIT_S (the daemon's database
    locked by another program, the disk full): nothing is confirmed yet."""


async def _created_through_the_outbox(ctx: WebContext, plan: RecordPlan) -> EntityRef | None:
    """The call's CreateCallRecords, submitted like any other CRM write (durable, delivered
    once: a second click finds what the first created), then read back from the call's ledger.
    The embedded CRM applies it at once; a remote one within CREATED_WAIT_S, else None.

    The whole is bounded by CREATED_WAIT_S, the submission too: Outbox.submit retries for as
    long as the store cannot commit (a locked database, a full disk), so it runs as a task of
    ctx.submissions, one per call, that the request stops waiting for (NotStored) but does not
    cancel: cancelled mid-way, it would leave the store's shielded transaction running with
    nobody to retrieve its error. The task goes on until the command is stored (once: a second
    click joins it instead of starting another), and the server's close() ends it."""
    submitting = ctx.submissions.start(plan.linkedid, lambda: ctx.outbox.submit(CreateCallRecords(plan)))
    stored = False
    try:
        async with asyncio.timeout(CREATED_WAIT_S):
            await asyncio.wait({submitting})  # waits for it; cancels nothing when the wait runs out
            if submitting.cancelled():  # the server is closing
                raise NotStored
            submitting.result()  # its CrmError is the request's
            stored = True
            while True:
                ledger = await ctx.outbox.ledger(plan.linkedid)
                if ledger.entity is not None:
                    return ledger.entity
                await asyncio.sleep(0.05)
    except TimeoutError:
        if not stored:
            raise NotStored from None
        return None


async def create_records(ctx: WebContext, who: Viewer, linkedid: str, kind: str, name: str) -> EntityRef:
    rules = ctx.rules()
    call = ctx.live.board.call(linkedid)
    if call is None or (who.employee not in call.shown_to() and not who.admin):
        raise web.HTTPNotFound(text="no such call on your window")
    line = rules.lines.get(call.line)
    if line is None or line.crm.unknown_caller is not UnknownCaller.OFFER or not call.offer:
        raise web.HTTPConflict(text="this call offers no record to create")
    if kind not in offer_kinds(rules):
        raise web.HTTPBadRequest(text=f"cannot create a {kind!r} here")
    if not call.number.startswith("+"):
        raise web.HTTPConflict(text="the caller's number is withheld")
    name = name.strip() or display_number(call.number, rules.default_region)
    if (too_long := name_too_long(name)) is not None:  # PostgreSQL would refuse it: a dead letter
        raise web.HTTPBadRequest(text=too_long)
    # One command whatever the button: a contact, a lead, or simple mode's deal and its contact
    # or company; its key comes from the linkedid, so a second click finds what the first created.
    plan = RecordPlan(mode=rules.crm.mode, phone=call.number, name=name, source=line.crm.source,
                      responsible=who.employee, linkedid=linkedid, line=line.number, direction=call.direction,
                      pipeline=rules.crm.pipeline, create_with=rules.crm.create_with, contact_only=kind == "contact")
    try:
        ref = await _created_through_the_outbox(ctx, plan)
        if ref is None:
            raise web.HTTPAccepted(text="asked: the CRM creates the records as soon as it answers")
        if ctx.pages is not None:
            await ctx.pages.take_offer(linkedid, ref)
    except NotStored:
        log.warning("call %s: %s's %s could not be stored within %.1f s (the daemon's database is unavailable)",
                    linkedid, who.employee, kind, CREATED_WAIT_S)
        raise web.HTTPServiceUnavailable(
            text="the daemon's database cannot take the request now: nothing is confirmed yet. Click again in "
                 "a moment: a second click creates nothing twice") from None
    except CrmError as exc:
        log.error("call %s: %s could not create a %s: %s", linkedid, who.employee, kind, exc)
        raise web.HTTPServiceUnavailable(text=f"the CRM refused: {exc}") from None
    log.info("call %s: %s created %s for %s from the call window", linkedid, who.employee, ref, masked(call.number))
    ctx.notifier.publish(RecordsCreated(linkedid, ref, who.employee))
    return ref


