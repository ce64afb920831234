"""The one place where the configured CRM adapter is picked.

Whatever the adapter, the daemon's own SQL store (`crm.embedded.database`) exists: it holds
the outbox and the call ledger, and, with the embedded adapter, the CRM records themselves.
An adapter is two things: a lookup (`find_by_phone` on the call path, within
daemon.crm_deadline_ms) and a delivery of the outbox's commands. The embedded adapter looks
up and applies in the store; a remote adapter (Bitrix24, webhook) is a `CrmLookup` and a
`CrmDeliverer` (core.ports) built here, opened and closed through the port.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from collections.abc import Callable
from typing import Protocol

from ..core.ports import CrmDeliverer, CrmLookup
from .embedded import EmbeddedCrm
from .outbox import HANGUP_REPORT_GRACE_S, Delivered, Delivery, Outbox


@dataclass
class CrmParts:
    store: EmbeddedCrm  # the daemon's own database: outbox, ledger (and the embedded CRM's records)
    lookup: CrmLookup  # what routing asks, within the deadline
    remote: CrmDeliverer | None  # None: the outbox applies its commands to the embedded tables

    async def open(self) -> None:
        await self.store.open()
        if self.lookup is not self.store:
            await self.lookup.open()
        if self.remote is not None and self.remote is not self.lookup:
            await self.remote.open()

    async def close(self) -> None:
        if self.remote is not None and self.remote is not self.lookup:
            await self.remote.close()
        if self.lookup is not self.store:
            await self.lookup.close()
        await self.store.close()


def daemon_store(database: str, *, pool_size: int | None = None) -> EmbeddedCrm:
    """The daemon's own database (crm.embedded.database, sized by crm.embedded.pool_size;
    `async with daemon_store(url) as store`): the command line's `crm` and `outbox` commands
    read and write it too."""
    return EmbeddedCrm(database) if pool_size is None else EmbeddedCrm(database, pool_size=pool_size)


class RemoteCrm(CrmLookup, CrmDeliverer, Protocol):
    """A remote adapter: one object answers the lookups and delivers the commands."""


def build_crm(adapter: str, database: str, store: EmbeddedCrm | None = None, *,
              pool_size: int | None = None, remote: RemoteCrm | None = None) -> CrmParts:
    """The CRM crm.adapter names. `store` replaces the daemon's own store (tests wrap it);
    `remote`: the bitrix24 or webhook adapter, built by the composition root from its section
    (`agi_daemon.remote_crm`)."""
    store = store or daemon_store(database, pool_size=pool_size)
    if adapter == "embedded":
        return CrmParts(store, store, None)
    if adapter in ("bitrix24", "webhook") and remote is not None:
        return CrmParts(store, remote, remote)
    raise ValueError(f"crm.adapter {adapter!r} needs its adapter")  # the schema refuses an unknown one first


def build_outbox(crm: CrmParts, *, max_attempts: int, dead_letter_after_hours: float,
                 on_delivered: Delivered | None = None, pbx: str | None = None,
                 metered: Callable[[CrmDeliverer], CrmDeliverer] | None = None) -> Outbox:
    """The outbox of the configured CRM (crm.outbox); `on_delivered` hears of each delivery;
    `pbx` (daemon.pbx_id) namespaces this daemon's linkedids in the store; `metered` wraps a
    remote CRM's deliveries (timed for /metrics)."""
    remote = crm.remote if crm.remote is None or metered is None else metered(crm.remote)
    return Outbox(
        crm.store,
        Delivery(crm.store, remote),
        max_attempts=max_attempts,
        dead_after=timedelta(hours=dead_letter_after_hours),
        on_delivered=on_delivered,
        pbx=pbx,
        hold_hangup_reports=0.0 if crm.remote is None else HANGUP_REPORT_GRACE_S,  # the embedded CRM merges
    )
