"""/metrics: the daemon's counters in Prometheus text format (prometheus-client).

Calls by direction and disposition (from call tracking's ended calls), routing decisions by
status and their latency, CRM lookup latency and lookups past `crm_deadline_ms`, AMI
reconnects and dropped events, CRM work pending, the outbox (commands pending, the oldest's
age, dead letters). One registry per daemon, so tests can run
several daemons in one process.
"""
from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..core.decisions import Decision
from ..core.live_calls import CallEvent, Ended
from ..core.model import Match
from ..core.commands import CallLedger, CrmCommand, LedgerUpdate
from ..core.ports import CrmRejected, CrmUnavailable, WouldWait
from ..core.rules import CallEntry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # a remote CRM: a round trip or a batch


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("agi_daemon_calls", "Calls ended, by direction and disposition",
                             ["direction", "disposition"], registry=self.registry)
        self.decisions = Counter("agi_daemon_routing_decisions", "Routing decisions, by status",
                                 ["status"], registry=self.registry)
        self.routing_seconds = Histogram("agi_daemon_routing_seconds", "Time to answer a routing request",
                                         buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.lookup_seconds = Histogram("agi_daemon_crm_lookup_seconds", "Time the CRM took to find a caller",
                                        buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.lookups_late = Counter("agi_daemon_crm_lookups_past_deadline",
                                    "CRM lookups that took longer than crm_deadline_ms", registry=self.registry)
        self.delivery_seconds = Histogram("agi_daemon_crm_delivery_seconds",
                                          "Time a remote CRM took to take one outbox command, by outcome "
                                          "(delivered, unavailable: retried, rejected: a dead letter)",
                                          ["outcome"], buckets=_DELIVERY_BUCKETS, registry=self.registry)

    def publish(self, event: CallEvent) -> None:
        """A notifier: counts the calls call tracking saw end."""
        if isinstance(event, Ended) and event.record is not None:
            record = event.record
            self.calls.labels(record.direction.value, record.disposition.value).inc()

    def watch_links(self, ami: Any, pending: Any) -> None:
        """Read the Asterisk link's (AMI or ARI, named by its `name`) and the pending work's own
        counters at each scrape."""
        self.registry.register(_Links(ami, pending))

    def watch_outbox(self, outbox: Any) -> None:
        """Read the outbox's last counts (`outbox.state`, refreshed by the outbox) at each scrape."""
        self.registry.register(_Outbox(outbox))

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _Links:
    def __init__(self, ami: Any, pending: Any) -> None:
        self._ami = ami
        self._pending = pending

    def describe(self) -> list:
        return []

    def collect(self):
        if self._ami is not None:
            name = getattr(self._ami, "name", "ami")  # the event source: "ami" or "ari"
            link = name.upper()
            yield CounterMetricFamily(f"agi_daemon_{name}_reconnects", f"{link} connections after the first",
                                      value=self._ami.reconnects)
            yield CounterMetricFamily(f"agi_daemon_{name}_dropped_events", f"{link} events dropped (queue full)",
                                      value=self._ami.dropped)
            yield GaugeMetricFamily(f"agi_daemon_{name}_connected", f"1 while connected to {link}",
                                    value=1 if self._ami.connected else 0)
        if self._pending is not None:
            yield GaugeMetricFamily("agi_daemon_crm_work_pending", "Calls' CRM work in flight",
                                    value=self._pending.in_flight)


class _Outbox:
    def __init__(self, outbox: Any) -> None:
        self._outbox = outbox

    def describe(self) -> list:
        return []

    def collect(self):
        state = self._outbox.state
        yield GaugeMetricFamily("agi_daemon_outbox_pending", "CRM commands waiting for delivery",
                                value=state.pending)
        yield GaugeMetricFamily("agi_daemon_outbox_oldest_pending_seconds",
                                "Age of the oldest CRM command waiting for delivery", value=state.oldest_pending_seconds)
        yield GaugeMetricFamily("agi_daemon_outbox_dead_letters", "CRM commands given up (see agi-daemon outbox list)",
                                value=state.dead)


class MeteredDeliverer:
    """A remote CRM's deliveries (Bitrix24, webhook), timed by outcome for /metrics: the remote
    latency an admin watches beside the outbox's depth and oldest pending age."""

    def __init__(self, remote: Any, metrics: Metrics) -> None:
        self._remote = remote
        self._metrics = metrics

    async def open(self) -> None:
        await self._remote.open()

    async def close(self) -> None:
        await self._remote.close()

    async def deliver(self, command: CrmCommand, ledger: CallLedger) -> LedgerUpdate:
        started, outcome = time.perf_counter(), "delivered"
        try:
            learned: LedgerUpdate = await self._remote.deliver(command, ledger)
            return learned
        except CrmUnavailable:
            outcome = "unavailable"
            raise
        except CrmRejected:
            outcome = "rejected"
            raise
        finally:
            self._metrics.delivery_seconds.labels(outcome).observe(time.perf_counter() - started)


class MeteredRouting:
    """The routing service, timed and counted (what the AGI routes call)."""

    def __init__(self, routing: Any, metrics: Metrics) -> None:
        self._routing = routing
        self._metrics = metrics
        self._by_status: dict[str, Any] = {}  # status -> its counter (labels() costs a lock per call)

    async def route(self, entry: CallEntry, linkedid: str) -> Decision:
        started = time.perf_counter()
        try:
            decision: Decision = await self._routing.route(entry, linkedid)
        except Exception:
            self._count("error")
            raise
        finally:
            self._metrics.routing_seconds.observe(time.perf_counter() - started)
        self._count(decision.status.value)
        return decision

    def _count(self, status: str) -> None:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self._metrics.decisions.labels(status)
        counter.inc()


class MeteredCrm:
    """A CRM adapter whose lookups are timed; everything else passes through."""

    def __init__(self, crm: Any, metrics: Metrics, deadline: float) -> None:
        self._crm = crm
        self._metrics = metrics
        self._deadline = deadline

    async def find_by_phone(self, phone: str) -> Match | None:
        started = time.perf_counter()
        try:
            return await self._crm.find_by_phone(phone)
        finally:
            self._observe(time.perf_counter() - started)

    def find_by_phone_now(self, phone: str) -> Match | None:
        """The CRM's immediate lookup, timed (WouldWait when it has none, or cannot now)."""
        find_now = getattr(self._crm, "find_by_phone_now", None)
        if find_now is None:
            raise WouldWait("this CRM has no immediate lookup")
        started = time.perf_counter()
        match: Match | None = find_now(phone)
        self._observe(time.perf_counter() - started)
        return match

    def _observe(self, took: float) -> None:
        self._metrics.lookup_seconds.observe(took)
        if took > self._deadline:
            self._metrics.lookups_late.inc()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._crm, name)
