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
from .asterisk.agi import FastAgiServer
from .asterisk.ami import AmiClient
from .asterisk.ami.translate import EVENT_NAMES, tracker_events
from .asterisk.routes.table import route_table
from .core.ports import Clock, CrmAdapter
from .crm.embedded import EmbeddedCrm
from .services.call_log import CallLogService
from .services.clock import SystemClock
from .services.pending import PendingWork
from .services.reassign import ReassignService
from .services.routing import RoutingService
from .services.tracking import TrackingService
from .settings import Settings, SettingsHolder

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
            try:
                problems = await asyncio.to_thread(self._holder.reload)
            except Exception:
                log.exception("reload failed, the running config stays")
                return
            self._report_reload(before, problems)

    def _report_reload(self, before: Settings, problems: list) -> None:
        if problems:
            log.error("reload refused, the running config stays:\n%s", "\n".join(map(str, problems)))
            return
        log.info("config reloaded from %s", self._holder.path)
        after = self._holder.current
        needs_restart = [name for name, old, new in (
            ("daemon", before.daemon, after.daemon),
            ("asterisk", before.asterisk, after.asterisk),
            ("crm.adapter", before.crm.adapter, after.crm.adapter),
            ("crm.embedded", before.crm.embedded, after.crm.embedded),
        ) if old != new]
        if needs_restart:
            log.warning("changes to %s take effect at the next restart", ", ".join(needs_restart))

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        settings = self._holder.current
        owned = self._crm is None  # the daemon opens and closes only the CRM it builds
        crm = self._crm or build_crm(settings)
        if owned:
            await crm.open()
        rules = lambda: self._holder.current.rules  # noqa: E731 - the running rules, reload-aware
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                pending = PendingWork(tasks.create_task)
                self.pending = pending
                routing = RoutingService(rules, crm, self._clock, pending, deadline=settings.daemon.crm_deadline_ms / 1000)
                call_log = CallLogService(rules, crm, self._clock, pending)
                ami = self._start_tracking(settings, tasks, rules, call_log, ReassignService(rules, crm, pending), pending)
                fastagi = settings.daemon.fastagi
                server = FastAgiServer(
                    route_table(routing, call_log, pending),
                    allowed_peers=fastagi.allowed_peers,
                    max_header_bytes=fastagi.max_header_bytes,
                    header_timeout=fastagi.header_timeout_ms / 1000,
                    max_sessions=fastagi.max_sessions,
                )
                await server.start(fastagi.listen.host, fastagi.listen.port)
                self.agi_port = server.port
                if ready is not None:
                    ready.set()
                try:
                    await stop.wait()
                finally:
                    await server.close()
                    await ami.close()
                    left = await pending.drain(DRAIN_SECONDS)
                    if left:
                        log.error("%d calls' CRM work was cancelled: not finished %.0f s after the stop", left, DRAIN_SECONDS)
        finally:
            self._tasks = None
            if owned:
                await crm.close()

    def _start_tracking(self, settings: Settings, tasks: asyncio.TaskGroup, rules, call_log, reassign, pending) -> AmiClient:
        """Follow calls over AMI: transfers (R10) and the full call log (R12)."""
        ami_settings = settings.asterisk.ami
        ami = AmiClient(ami_settings.host, ami_settings.port, ami_settings.username,
                        ami_settings.secret.get_secret_value(), events=set(EVENT_NAMES), event_mask="call")
        tracking = TrackingService(rules, call_log, reassign, pending)
        self.ami, self.tracking = ami, tracking
        tasks.create_task(ami.run())
        tasks.create_task(tracking.run(tracker_events(ami.events())))
        return ami


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
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    await daemon.serve(stop)
