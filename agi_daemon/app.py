"""The composition root: builds every part from the settings, owns every task, handles signals.

Nothing else wires parts together. Every background task runs in the TaskGroup of
`Daemon.serve`; stopping drains the CRM work in flight before the CRM is closed.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import queue
import signal
from collections.abc import Iterator
from typing import Awaitable, Callable

from . import config_reload, simulation
from .asterisk.agi import FastAgiServer
from .asterisk.ami import AmiClient
from .asterisk.ami.translate import EVENT_NAMES, tracker_events
from .asterisk.routes.table import route_table
from .core.live_calls import Fanout
from .core.model import Direction, Rules
from .core.ports import Clock, CrmAdapter
from .crm.embedded import EmbeddedCrm
from .crm.pages import CrmPages
from .crm.users import WebUsers
from .log_lines import ready_line
from .services.call_log import CallLogService
from .services.clock import SystemClock
from .services.pending import PendingWork
from .services.reassign import ReassignService
from .services.routed_calls import RoutedCalls
from .services.routing import RoutingService
from .services.tracking import TrackingService
from .settings import Settings, SettingsHolder
from .web.live import LiveCalls
from .web.metrics import MeteredCrm, MeteredRouting, Metrics
from .web.server import WebContext, WebServer

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0


def build_crm(settings: Settings) -> EmbeddedCrm:
    """The configured CRM (settings accept only the embedded one in this version)."""
    return EmbeddedCrm(settings.crm.embedded.database)


class Daemon:
    def __init__(
        self,
        holder: SettingsHolder,
        *,
        crm: CrmAdapter | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`crm` replaces the configured CRM (tests wrap the real store to make it slow)."""
        self._holder = holder
        self._crm = crm
        self._clock = clock or SystemClock()
        self.agi_port: int | None = None
        self.pending: PendingWork | None = None
        self.ami: AmiClient | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._reloading = asyncio.Lock()
        self.tracking: TrackingService | None = None
        self.web_port: int | None = None
        self.live: LiveCalls | None = None
        self.metrics: Metrics | None = None
        self.parts: Parts | None = None

    def reload(self) -> None:
        """SIGHUP: read the YAML file again, off the event loop, as a task the daemon owns."""
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
            for line in config_reload.what_changed(before, loaded):
                log.warning("%s", line)

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        settings = self._holder.current
        owned = self._crm is None  # the daemon opens and closes only the CRM it builds
        crm = self._crm or build_crm(settings)
        if owned:
            await crm.open()
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                parts = Parts(settings, lambda: self._holder.current.rules, crm, self._clock, tasks)
                try:
                    await build(parts)
                    self._expose(parts)
                    log.info("%s", ready_line(settings, parts.fastagi.port if parts.fastagi else 0))
                    if ready is not None:
                        ready.set()
                    await stop.wait()
                finally:
                    await parts.stop()
        finally:
            self._tasks = None
            if owned:
                await crm.close()

    def _expose(self, parts: Parts) -> None:
        """What tests and signals read from the running daemon."""
        self.pending, self.ami, self.tracking = parts.pending, parts.ami, parts.tracking
        self.agi_port = parts.fastagi.port if parts.fastagi else None
        self.web_port = parts.web.port if parts.web else None
        self.live, self.metrics, self.parts = parts.live, parts.metrics, parts


# ---- the builder: one wiring function per feature, in the order they start ----------------


class Parts:
    """What one run of the daemon is made of. `build` fills it feature by feature; `stop`
    closes what was started, last started first, then drains the CRM work in flight."""

    def __init__(self, settings: Settings, rules: Callable[[], Rules], crm: CrmAdapter, clock: Clock,
                 tasks: asyncio.TaskGroup) -> None:
        self.settings = settings
        self.rules = rules  # the running rules, reload-aware
        self.crm = crm
        self.clock = clock
        self.tasks = tasks
        self.pending = PendingWork(tasks.create_task)
        self.routing: RoutingService | None = None
        self.call_log: CallLogService | None = None
        self.ami: AmiClient | None = None
        self.tracking: TrackingService | None = None
        self.fastagi: FastAgiServer | None = None
        self.web: WebServer | None = None
        self.metrics = Metrics()
        self.live = LiveCalls()
        # Who hears live call events: the agents' call windows and the metrics.
        self.notifier = Fanout((self.live, self.metrics))
        self._closers: list[tuple[str, Callable[[], Awaitable[None]]]] = []

    def on_stop(self, name: str, close: Callable[[], Awaitable[None]]) -> None:
        self._closers.append((name, close))

    async def stop(self) -> None:
        for name, close in reversed(self._closers):
            try:
                await close()
            except Exception:
                log.exception("stopping %s failed", name)
        left = await self.pending.drain(DRAIN_SECONDS)
        if left:
            log.error("%d calls' CRM work was cancelled: not finished %.0f s after the stop", left, DRAIN_SECONDS)


async def build(parts: Parts) -> None:
    """Wire every feature of the daemon, one function each."""
    wire_services(parts)
    wire_tracking(parts)
    await wire_fastagi(parts)
    await wire_web(parts)


def wire_services(parts: Parts) -> None:
    """The use cases: routing (R1-R9, R11) and the call log (R12)."""
    deadline = parts.settings.daemon.crm_deadline_ms / 1000
    timed_crm = MeteredCrm(parts.crm, parts.metrics, deadline)  # lookups timed for /metrics
    routed = RoutedCalls()  # what routing decided, for the hangup report
    parts.routing = RoutingService(parts.rules, timed_crm, parts.clock, parts.pending, deadline=deadline,
                                   routed=routed, notifier=parts.notifier)
    parts.call_log = CallLogService(parts.rules, parts.crm, parts.clock, parts.pending, routed=routed)


def wire_tracking(parts: Parts) -> None:
    """Follow calls over AMI: transfers (R10) and the full call log (R12)."""
    assert parts.call_log is not None
    ami_settings = parts.settings.asterisk.ami
    ami = AmiClient(ami_settings.host, ami_settings.port, ami_settings.username,
                    ami_settings.secret.get_secret_value(), events=set(EVENT_NAMES), event_mask="call")
    reassign = ReassignService(parts.rules, parts.crm, parts.pending)
    tracking = TrackingService(parts.rules, parts.call_log, reassign, parts.pending, notifier=parts.notifier)
    parts.ami, parts.tracking = ami, tracking
    parts.tasks.create_task(ami.run())
    parts.tasks.create_task(tracking.run(tracker_events(ami.events())))
    parts.on_stop("AMI", ami.close)
    parts.metrics.watch_links(ami, parts.pending)


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
    embedded = parts.crm if hasattr(parts.crm, "transaction") else None  # the CRM pages need the SQL store
    context = WebContext(
        rules=parts.rules,
        settings=lambda: parts.settings,
        crm=parts.crm,
        pages=CrmPages(embedded) if embedded is not None else None,
        users=WebUsers(embedded) if embedded is not None else None,
        live=parts.live,
        metrics=parts.metrics,
        health=lambda: health(parts),
        notifier=parts.notifier,
        simulate=lambda *call: simulate_call(parts.rules(), parts.crm, *call),
        metrics_peers=web_settings.metrics_allowed_peers,
    )
    server = WebServer(context)
    await server.start(web_settings.listen.host, web_settings.listen.port)
    parts.web = server
    parts.on_stop("web pages", server.close)


async def simulate_call(rules: Rules, crm: CrmAdapter, direction: str, line: str, caller: str,
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
    ami = parts.ami
    return serving, {
        "fastagi": "serving" if serving else "stopped",
        "ami": "connected" if ami is not None and ami.connected else "disconnected",
        "ami_last_error": ami.last_error if ami is not None and not ami.connected else None,
        "crm": parts.settings.crm.adapter.value,
        "pending_crm_work": parts.pending.in_flight,
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
    listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    root.handlers = [logging.handlers.QueueHandler(records)]
    listener.start()
    try:
        yield
    finally:
        listener.stop()  # writes what is queued
        root.handlers = handlers


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
    await daemon.serve(stop)
    log.info("agi-daemon stopped")
