"""The composition root: builds every part from the settings, owns every task, handles signals.

Nothing else wires parts together. Every background task runs in the TaskGroup of
`Daemon.serve`; stopping drains the CRM work in flight before the CRM is closed.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from .asterisk.agi import FastAgiServer
from .asterisk.ami import AmiClient
from .asterisk.ami.translate import EVENT_NAMES
from .asterisk.ari import EVENT_TYPES as ARI_EVENT_TYPES
from .asterisk.ari import AriClient
from .asterisk.event_source import AmiEventSource, AriEventSource, EventSource
from .asterisk.routes.stasis import APP_EVENT_TYPES, StasisRouting
from .asterisk.routes.table import route_table
from .core.ports import Clock, CrmAdapter
from .crm.embedded import EmbeddedCrm
from .services.call_log import CallLogService
from .services.clock import SystemClock
from .services.pending import PendingWork
from .services.reassign import ReassignService
from .services.routed_calls import RoutedCalls
from .services.routing import RoutingService
from .services.tracking import TrackingService
from .settings import Settings, SettingsHolder
from .settings import EventsInterface

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0
STASIS_DECISION_MARGIN = 0.1  # seconds past crm_deadline_ms a channel may wait in Stasis for its decision


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
        self.ami: AmiClient | None = None  # asterisk.events: ami
        self.ari: AriClient | None = None  # asterisk.events: ari
        self.stasis: StasisRouting | None = None
        self.event_source: EventSource | None = None
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
                routed = RoutedCalls()  # what routing decided, for the hangup report
                routing = RoutingService(rules, crm, self._clock, pending,
                                         deadline=settings.daemon.crm_deadline_ms / 1000, routed=routed)
                call_log = CallLogService(rules, crm, self._clock, pending, routed=routed)
                events = self._start_asterisk_events(settings, tasks, rules, routing, call_log,
                                                     ReassignService(rules, crm, pending), pending)
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
                    await events.close()
                    left = await pending.drain(DRAIN_SECONDS)
                    if left:
                        log.error("%d calls' CRM work was cancelled: not finished %.0f s after the stop", left, DRAIN_SECONDS)
        finally:
            self._tasks = None
            if owned:
                await crm.close()

    def _start_asterisk_events(self, settings: Settings, tasks: asyncio.TaskGroup, rules, routing, call_log,
                               reassign, pending) -> EventSource:
        """Follow calls (R10 transfers, R12 call log) over the interface `asterisk.events`
        names: AMI, or ARI, which also runs the Stasis application that routes the calls of
        dialplan/agi-daemon-stasis.conf (with the same routing service as FastAGI)."""
        source: EventSource
        if settings.asterisk.events is EventsInterface.ARI:
            ari_settings = settings.asterisk.ari
            assert ari_settings is not None  # settings require it with events: ari
            ari = AriClient(ari_settings.url, ari_settings.username, ari_settings.password.get_secret_value(),
                            ari_settings.app, event_types=ARI_EVENT_TYPES, app_types=APP_EVENT_TYPES)
            stasis = StasisRouting(ari, ari_settings.app, routing, call_log, pending,
                                   deadline=settings.daemon.crm_deadline_ms / 1000 + STASIS_DECISION_MARGIN)
            ari.application = stasis  # StasisStart and the hangup reports go to it at once
            self.ari, self.stasis = ari, stasis
            source = AriEventSource(ari)
        else:
            ami_settings = settings.asterisk.ami
            ami = AmiClient(ami_settings.host, ami_settings.port, ami_settings.username,
                            ami_settings.secret.get_secret_value(), events=set(EVENT_NAMES), event_mask="call")
            self.ami = ami
            source = AmiEventSource(ami)
        tracking = TrackingService(rules, call_log, reassign, pending)
        self.event_source, self.tracking = source, tracking
        tasks.create_task(source.run())
        tasks.create_task(tracking.run(source.events()))
        return source


async def run_until_signalled(holder: SettingsHolder) -> None:
    """`agi-daemon run`: SIGTERM/SIGINT stop, SIGHUP reloads the YAML file."""
    daemon = Daemon(holder)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    await daemon.serve(stop)
