"""The composition root: builds every part from the settings, owns every task, handles signals.

Nothing else wires parts together. Every background task runs in the TaskGroup of
`Daemon.serve`; stopping drains the CRM work in flight before the CRM is closed.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import logging.handlers
import queue
import signal
import time
from collections.abc import Iterator
from typing import Awaitable, Callable

from . import config_reload, simulation
from .asterisk.agi import FastAgiServer
from .asterisk.ami import AmiClient
from .asterisk.ami.translate import EVENT_NAMES
from .asterisk.ari import EVENT_TYPES as ARI_EVENT_TYPES
from .asterisk.ari import AriClient
from .asterisk.event_source import AmiEventSource, AriEventSource, EventSource
from .asterisk.routes.stasis import APP_EVENT_TYPES, StasisRouting
from .asterisk.routes.table import route_table
from .core.call_cards import CardPolicy
from .core.live_calls import Fanout
from .core.model import Direction, Rules
from .core.commands import CreateCallRecords, CrmCommand, LedgerUpdate
from .core.live_calls import RecordsCreated
from .core.ports import Clock, CrmLookup, Notifier
from .crm.kept_reports import StoreKeptReports
from .crm.embedded import EmbeddedCrm
from .crm.outbox import Outbox
from .crm.registry import CrmParts, build_crm, build_outbox
from .remote_crm import employee_links, remote_crm
from .crm.bitrix24.adapter import Bitrix24Crm
from .crm.pages import CrmPages
from .crm.users import WebUsers
from .log_lines import ready_line
from .services.call_cards import CallCards
from .services.call_log import CallLogService
from .services.clock import SystemClock
from .services.pending import PendingWork
from .services.reassign import ReassignService
from .services.routed_calls import RoutedCalls
from .services.routing import RoutingService
from .services.tracking import TrackingService
from .settings import CrmAdapterKind, EventsInterface, Settings, SettingsHolder
from .web.live import LiveCalls
from .web.login import end_sessions_of_changed_passwords
from .web.metrics import MeteredCrm, MeteredDeliverer, MeteredRouting, Metrics
from .web.server import WebContext, WebServer

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0
LOG_GATHER_S = 0.02  # the log writer gathers the lines logged within this long (see _LogWriter)
STASIS_DECISION_MARGIN = 0.1  # seconds past crm_deadline_ms a channel may wait in Stasis for its decision


class Daemon:
    def __init__(
        self,
        holder: SettingsHolder,
        *,
        crm: CrmParts | EmbeddedCrm | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`crm` replaces the configured CRM (tests wrap the real store's lookup to make it
        slow); the daemon neither opens nor closes it."""
        self._holder = holder
        self._started: Settings | None = None  # what serve() started with: what a restart would change
        self._crm = crm
        self._clock = clock or SystemClock()
        self.agi_port: int | None = None
        self.pending: PendingWork | None = None
        self.ami: AmiClient | None = None
        self.ari: AriClient | None = None
        self.stasis: StasisRouting | None = None
        self.event_source: EventSource | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._starting = False  # serve() runs, its parts not all built yet
        self._reload_asked = False  # a SIGHUP came meanwhile
        self._reloading = asyncio.Lock()
        self.tracking: TrackingService | None = None
        self.web_port: int | None = None
        self.live: LiveCalls | None = None
        self.metrics: Metrics | None = None
        self.parts: Parts | None = None

    def reload(self) -> None:
        """SIGHUP: read the YAML file again, off the event loop, as a task the daemon owns. One
        asked while the daemon starts (a remote CRM's users being read, say) is done once it
        runs: `systemctl reload` right after a start said it succeeded."""
        if self._starting:
            self._reload_asked = True
            log.info("reload asked while the daemon starts: done once it runs")
            return
        if self._tasks is None:
            log.warning("reload ignored: the daemon is not running")
            return
        try:
            self._tasks.create_task(self._reload())
        except RuntimeError:  # the TaskGroup is shutting down
            log.warning("reload ignored: the daemon is stopping")

    async def _reload(self) -> None:
        async with self._reloading:  # two quick SIGHUPs: one reload after the other
            before = self._holder.current
            try:  # in a thread of its own, with a time limit: a stuck read never wedges the daemon
                loaded = await config_reload.in_thread(self._holder.read)
            except config_reload.ReloadTooSlow as exc:
                log.error("reload refused, the running config stays: %s", exc)
                return
            except Exception:
                log.exception("reload failed, the running config stays")
                return
            if isinstance(loaded, list):
                log.error("reload refused, the running config stays:\n%s", "\n".join(map(str, loaded)))
                return
            self._holder.take(loaded)
            log.info("config reloaded from %s", self._holder.path)
            log_warnings(loaded)
            for line in config_reload.what_changed(before, loaded, self._started):
                log.warning("%s", line)
            self._pipelines_changed(loaded)  # no await since `take`: no deal meanwhile with half of the change
            await self._employees_changed(before, loaded)

    def _pipelines_changed(self, after: Settings) -> None:
        """The rules just taken name crm.simple.pipeline; Bitrix24 maps it to a deal category
        with crm.bitrix24.pipelines, which is taken with them."""
        remote = self.parts.crm_parts.remote if self.parts is not None else None
        if isinstance(remote, Bitrix24Crm) and after.crm.bitrix24 is not None:
            remote.pipelines_changed(after.crm.bitrix24.pipelines)

    async def _employees_changed(self, before: Settings, after: Settings) -> None:
        """Bitrix24 knows the employees by their portal users, read at the start: a reload that
        changes them has them read again (routing uses the new employees at once)."""
        remote = self.parts.crm_parts.remote if self.parts is not None else None
        links = employee_links(after)
        if not isinstance(remote, Bitrix24Crm) or links == employee_links(before):
            return
        await remote.employees_changed(links, after.rules.employees)  # bounded: EMPLOYEES_READ_S

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        settings = self._started = self._holder.current
        owned = self._crm is None  # the daemon opens and closes only the CRM it builds
        given = self._crm
        crm = given if isinstance(given, CrmParts) else build_crm(
            settings.crm.adapter.value, settings.crm.embedded.database, given, pool_size=settings.crm.embedded.pool_size,
            remote=remote_crm(settings))
        self._starting = True
        try:
            if owned:
                await crm.open()
        except BaseException:
            self._starting = False
            raise
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                parts = Parts(settings, lambda: self._holder.current.rules, crm, self._clock, tasks)
                try:
                    await build(parts)
                    self._expose(parts)
                    self._starting = False
                    if self._reload_asked:  # a SIGHUP while the daemon started
                        self._reload_asked = False
                        tasks.create_task(self._reload())
                    log.info("%s", ready_line(settings, parts.fastagi.port if parts.fastagi else 0))
                    if ready is not None:
                        ready.set()
                    await stop.wait()
                finally:
                    await parts.stop()
        finally:
            self._tasks, self._starting = None, False
            if owned:
                await crm.close()

    def _expose(self, parts: Parts) -> None:
        """What tests and signals read from the running daemon."""
        self.pending, self.ami, self.tracking = parts.pending, parts.ami, parts.tracking
        self.ari, self.stasis, self.event_source = parts.ari, parts.stasis, parts.event_source
        self.agi_port = parts.fastagi.port if parts.fastagi else None
        self.web_port = parts.web.port if parts.web else None
        self.live, self.metrics, self.parts = parts.live, parts.metrics, parts


# ---- the builder: one wiring function per feature, in the order they start ----------------


class Parts:
    """What one run of the daemon is made of. `build` fills it feature by feature; `stop`
    closes what was started, last started first, then drains the CRM work in flight."""

    def __init__(self, settings: Settings, rules: Callable[[], Rules], crm: CrmParts, clock: Clock,
                 tasks: asyncio.TaskGroup) -> None:
        self.settings = settings
        self.rules = rules  # the running rules, reload-aware
        self.crm = crm.lookup
        self.store = crm.store
        self.crm_parts = crm
        self.outbox: Outbox | None = None
        self.clock = clock
        self.tasks = tasks
        self.pending = PendingWork(tasks.create_task)
        self.routing: RoutingService | None = None
        self.call_log: CallLogService | None = None
        self.ami: AmiClient | None = None  # asterisk.events: ami
        self.ari: AriClient | None = None  # asterisk.events: ari
        self.stasis: StasisRouting | None = None  # with ari: the Stasis application routing calls
        self.event_source: EventSource | None = None  # whichever of the two call tracking listens to
        self.tracking: TrackingService | None = None
        self.fastagi: FastAgiServer | None = None
        self.web: WebServer | None = None
        self.metrics = Metrics()
        self.live = LiveCalls()
        # Who hears live call events: the agents' call windows and the metrics.
        self.notifier = Fanout((self.live, self.metrics))
        self._closers: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._last_closers: list[tuple[str, Callable[[], Awaitable[None]]]] = []

    def on_stop(self, name: str, close: Callable[[], Awaitable[None]]) -> None:
        self._closers.append((name, close))

    def on_stop_last(self, name: str, close: Callable[[], Awaitable[None]]) -> None:
        """Closed after the calls' CRM work is drained (the outbox)."""
        self._last_closers.append((name, close))

    async def stop(self) -> None:
        for name, close in reversed(self._closers):
            try:
                await close()
            except Exception:
                log.exception("stopping %s failed", name)
        left = await self.pending.drain(DRAIN_SECONDS)
        if left:
            log.error("%d calls' CRM work was cancelled: not finished %.0f s after the stop", left, DRAIN_SECONDS)
        for name, close in reversed(self._last_closers):
            try:
                await close()
            except Exception:
                log.exception("stopping %s failed", name)


async def build(parts: Parts) -> None:
    """Wire every feature of the daemon, one function each."""
    wire_outbox(parts)
    wire_call_cards(parts)
    wire_services(parts)
    wire_tracking(parts)
    await wire_fastagi(parts)
    await wire_web(parts)


def wire_outbox(parts: Parts) -> None:
    """Every CRM write goes through the outbox: committed to the daemon's store, then delivered
    by a task of the TaskGroup (what an earlier run left pending first). Stopped last: the
    calls' CRM work still submits to it while it drains."""
    outbox_settings = parts.settings.crm.outbox
    outbox = build_outbox(parts.crm_parts, max_attempts=outbox_settings.max_attempts,
                          dead_letter_after_hours=outbox_settings.dead_letter_after_hours,
                          on_delivered=records_created_to(parts.notifier), pbx=parts.settings.daemon.pbx_id,
                          metered=lambda remote: MeteredDeliverer(remote, parts.metrics))
    parts.outbox = outbox
    delivering = parts.tasks.create_task(outbox.run())

    async def stop() -> None:
        if not await outbox.settle(DRAIN_SECONDS):  # deliver what this run submitted, within the drain
            log.warning("outbox: CRM writes still waiting at the stop stay pending, delivered at the next start")
        delivering.cancel()

    parts.on_stop_last("outbox", stop)
    parts.metrics.watch_outbox(outbox)


def wire_call_cards(parts: Parts) -> None:
    """crm.bitrix24.card: Bitrix24's own call card follows the live call events, through the
    outbox (one more listener beside the call windows and the metrics)."""
    portal = parts.settings.crm.bitrix24
    if parts.settings.crm.adapter is not CrmAdapterKind.BITRIX24 or portal is None or portal.card is CardPolicy.NONE:
        return  # no listener: nothing to follow
    assert parts.outbox is not None
    cards = CallCards(parts.rules, portal.card, parts.outbox, parts.pending)
    parts.notifier = Fanout((parts.live, parts.metrics, cards))


def records_created_to(notifier: Notifier) -> Callable[[CrmCommand, LedgerUpdate], None]:
    """Once a call's records are created, the call windows hear of it."""

    def delivered(command: CrmCommand, learned: LedgerUpdate) -> None:
        if isinstance(command, CreateCallRecords) and learned.created is not None:
            notifier.publish(RecordsCreated(command.linkedid, learned.created.primary, command.plan.responsible))

    return delivered


def wire_services(parts: Parts) -> None:
    """The use cases: routing (R1-R9, R11) and the call log (R12)."""
    assert parts.outbox is not None
    deadline = parts.settings.daemon.crm_deadline_ms / 1000
    timed_crm = MeteredCrm(parts.crm, parts.metrics, deadline)  # lookups timed for /metrics
    routed = RoutedCalls()  # what routing decided, for the hangup report
    parts.routing = RoutingService(parts.rules, timed_crm, parts.clock, parts.pending, commands=parts.outbox,
                                   deadline=deadline, routed=routed, notifier=parts.notifier)
    # A remote CRM's slow lookup leaves a hung-up call's report waiting: it is kept in the
    # daemon's store meanwhile. With the embedded CRM the lookup reads that very store: when it
    # is slow, so would the keeping be, and each report of a call routed by an earlier run
    # would pay two more writes for nothing.
    kept = StoreKeptReports(parts.store, parts.settings.daemon.pbx_id) if parts.crm_parts.remote is not None else None
    parts.call_log = CallLogService(parts.rules, parts.crm, parts.clock, parts.pending, commands=parts.outbox,
                                    routed=routed, notifier=parts.notifier, kept=kept)
    if kept is None:
        return
    # the calls an earlier run (or a stopped daemon of a shared store) did not log while their
    # CRM work ran: logged now, and looked for again every minute
    kept_reports = parts.tasks.create_task(parts.call_log.keep_logging_kept_reports())

    async def stop_kept_reports() -> None:
        kept_reports.cancel()

    parts.on_stop("kept hangup reports", stop_kept_reports)


def wire_tracking(parts: Parts) -> None:
    """Follow calls (transfers, R10; the full call log, R12) over the interface
    `asterisk.events` names: AMI, or ARI, which also runs the Stasis application that routes
    the calls of dialplan/agi-daemon-stasis.conf with the same routing service as FastAGI."""
    assert parts.call_log is not None and parts.routing is not None and parts.outbox is not None
    settings = parts.settings
    source: EventSource
    if settings.asterisk.events is EventsInterface.ARI:
        ari_settings = settings.asterisk.ari
        assert ari_settings is not None  # the settings require it with events: ari
        ari = AriClient(ari_settings.url, ari_settings.username, ari_settings.password.get_secret_value(),
                        ari_settings.app, event_types=ARI_EVENT_TYPES, app_types=APP_EVENT_TYPES)
        stasis = StasisRouting(ari, ari_settings.app, MeteredRouting(parts.routing, parts.metrics), parts.call_log,
                               parts.pending, deadline=settings.daemon.crm_deadline_ms / 1000 + STASIS_DECISION_MARGIN)
        ari.application = stasis  # StasisStart and the hangup reports go to it at once
        parts.ari, parts.stasis = ari, stasis
        source = AriEventSource(ari)
    else:
        ami_settings = settings.asterisk.ami
        ami = AmiClient(ami_settings.host, ami_settings.port, ami_settings.username,
                        ami_settings.secret.get_secret_value(), events=set(EVENT_NAMES), event_mask="call")
        parts.ami = ami
        source = AmiEventSource(ami)
    reassign = ReassignService(parts.rules, parts.outbox, parts.pending)
    tracking = TrackingService(parts.rules, parts.call_log, reassign, parts.pending, notifier=parts.notifier,
                               offers=parts.outbox.offer)
    parts.event_source, parts.tracking = source, tracking
    parts.tasks.create_task(source.run())
    parts.tasks.create_task(tracking.run(source.events()))
    parts.on_stop(source.name.upper(), source.close)
    parts.metrics.watch_links(source, parts.pending)


async def wire_fastagi(parts: Parts) -> None:
    """The FastAGI server the dialplan asks where calls go; closed first at the stop."""
    assert parts.routing is not None and parts.call_log is not None
    fastagi = parts.settings.daemon.fastagi
    server = FastAgiServer(
        route_table(MeteredRouting(parts.routing, parts.metrics), parts.call_log, parts.pending),
        allowed_peers=fastagi.allowed_peers,
        max_header_bytes=fastagi.max_header_bytes,
        header_timeout=fastagi.header_timeout_ms / 1000,
        max_sessions=fastagi.max_sessions,
    )
    await server.start(fastagi.listen.host, fastagi.listen.port)
    parts.fastagi = server
    parts.on_stop("FastAGI", server.close)


async def wire_web(parts: Parts) -> None:
    """The agents' call window, the CRM and admin pages, the JSON API, /metrics and /healthz."""
    web_settings = parts.settings.daemon.web
    embedded = parts.store if parts.crm_parts.remote is None else None  # the CRM pages show the embedded CRM
    context = WebContext(
        rules=parts.rules,
        settings=lambda: parts.settings,
        crm=parts.crm,
        pages=CrmPages(embedded, pbx=parts.settings.daemon.pbx_id) if embedded is not None else None,
        users=WebUsers(parts.store),  # passwords live in the daemon's own store, whatever crm.adapter
        live=parts.live,
        metrics=parts.metrics,
        health=lambda: health(parts),
        notifier=parts.notifier,
        simulate=lambda *call: simulate_call(parts.rules(), parts.crm, *call),
        metrics_peers=web_settings.metrics_allowed_peers,
        trusted_proxies=web_settings.trusted_proxies,
        outbox=parts.outbox,
        tracking=lambda: parts.event_source is not None and parts.event_source.connected,
    )
    server = WebServer(context)
    await server.start(web_settings.listen.host, web_settings.listen.port)
    parts.web = server
    # a password set again (`agi-daemon user set-password`, a separate process) ends the
    # sessions opened with the old one
    password_check = parts.tasks.create_task(end_sessions_of_changed_passwords(server.app))

    async def stop() -> None:
        password_check.cancel()
        await server.close()

    parts.on_stop("web pages", stop)


async def simulate_call(rules: Rules, crm: CrmLookup, direction: str, line: str, caller: str,
                        callee: str | None) -> tuple[dict[str, object], str]:
    """The admin page's simulator: `agi-daemon simulate` itself (the same argument checks, the
    same dry run through routing). Arguments the command line refuses give
    `{"status": "refused", "error": ...}` with the command line's message."""
    try:
        entry = simulation.call_entry(rules, Direction(direction), line=line or None, caller=caller, callee=callee)
    except simulation.Refused as exc:
        return {"status": "refused", "error": str(exc)}, str(exc)
    decision = await simulation.simulate(rules, crm, entry)
    return simulation.decision_json(decision), simulation.decision_text(decision)


def health(parts: Parts) -> tuple[bool, dict[str, object]]:
    """(FastAGI serving, each link's state) for /healthz and the admin page."""
    serving = parts.fastagi is not None and parts.fastagi.serving
    link = parts.event_source  # AMI or ARI, as asterisk.events says
    name = link.name if link is not None else "ami"
    return serving, {
        "fastagi": "serving" if serving else "stopped",
        name: "connected" if link is not None and link.connected else "disconnected",
        f"{name}_last_error": link.last_error if link is not None and not link.connected else None,
        "crm": parts.settings.crm.adapter.value,
        "pending_crm_work": parts.pending.in_flight,
        "outbox_pending": parts.outbox.state.pending if parts.outbox else 0,
        "outbox_dead_letters": parts.outbox.state.dead if parts.outbox else 0,
        "calls_in_progress": parts.tracking.calls_in_progress if parts.tracking else 0,
    }


def log_warnings(settings: Settings) -> None:
    """What check-config warns about, in the daemon's log too."""
    for problem in settings.warnings:
        log.warning("config: %s", problem)


@contextlib.contextmanager
def logging_off_the_loop() -> Iterator[None]:
    """While the daemon runs, log records are queued and a thread writes them: a log file on a
    busy disk (writeback throttling can hold a write for hundreds of milliseconds) never
    stops the event loop, and so never makes a call wait."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = _LogWriter(records, *handlers)
    root.handlers = [_ToLogWriter(records)]
    # What a record notes and the log format never shows (its source line, thread and
    # process), left out as the logging HOWTO's "Optimization" section says: finding the
    # source line walks the stack on every line logged.
    noted = logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    try:
        listener.start()
        yield
    finally:
        listener.stop()  # writes what is queued
        root.handlers = handlers
        logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = noted


class _ToLogWriter(logging.handlers.QueueHandler):
    """Queues each record as it is for the log writer thread, which formats it: a thread of
    this process reads the queue, so the record need not be formatted and copied first (what
    QueueHandler does for a queue read by another process). The arguments of a log call are
    therefore formatted a moment later, in that thread: the daemon logs only values that do
    not change (text, numbers, enum members, exceptions, frozen records)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _LogWriter(logging.handlers.QueueListener):
    """The thread that writes the queued log records. Woken by a record after a quiet spell, it
    waits LOG_GATHER_S before writing, so the lines logged meanwhile are written in the same
    wakeup: under load, a few dozen wakeups per second instead of one per line (each costs
    two thread switches on the daemon's core). A line reaches the log at most that much later."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord], *handlers: logging.Handler) -> None:
        super().__init__(records, *handlers, respect_handler_level=True)
        self._records = records

    def dequeue(self, block: bool) -> logging.LogRecord:
        if block and self._records.empty():
            record = self._records.get()
            time.sleep(LOG_GATHER_S)
            return record
        return self._records.get(block)


async def run_until_signalled(holder: SettingsHolder) -> None:
    """`agi-daemon run`: SIGTERM/SIGINT stop, SIGHUP reloads the YAML file."""
    with logging_off_the_loop():
        await _run_until_signalled(holder)


async def _run_until_signalled(holder: SettingsHolder) -> None:
    daemon = Daemon(holder)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping(name: str) -> None:
        log.info("%s: stopping (new calls go to the dialplan's fallback; CRM work in flight gets up to %.0f s)",
                 name, DRAIN_SECONDS)
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, stopping, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, stopping, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    log_warnings(holder.current)
    tune_garbage_collector()
    await daemon.serve(stop)
    log.info("agi-daemon stopped")


# Python collects its youngest generation every 700 allocations by default: a FastAGI session
# allocates hundreds of short-lived objects (reference counting frees them anyway), so the
# collector ran every session or two, and each older-generation pass walked every call still
# remembered for its hangup report (up to 20,000). Measured on a 1,000,000-contact CRM after
# 20,000 calls: 100 µs of a new caller's 550 µs went there.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """At start: what was built so far (modules, settings) is left out of every collection,
    and collections run every GC_THRESHOLDS[0] allocations."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
