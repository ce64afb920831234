"""Hand-written stand-ins around the real embedded CRM: slower, failing, or counting calls."""
from __future__ import annotations

import asyncio

from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.crm.embedded import EmbeddedCrm


class SlowCrm:
    """The real store, but every lookup takes `delay` seconds (a CRM under load)."""

    def __init__(self, real: EmbeddedCrm, delay: float) -> None:
        self.real = real
        self.delay = delay

    async def find_by_phone(self, phone):
        await asyncio.sleep(self.delay)
        return await self.real.find_by_phone(phone)

    def __getattr__(self, name):
        return getattr(self.real, name)


class FlakyCrm:
    """The real store, but the first `failures` lookups fail as if the CRM were down."""

    def __init__(self, real: EmbeddedCrm, failures: int) -> None:
        self.real = real
        self.failures = failures

    async def find_by_phone(self, phone):
        if self.failures > 0:
            self.failures -= 1
            raise CrmUnavailable("CRM down for the test")
        return await self.real.find_by_phone(phone)

    def __getattr__(self, name):
        return getattr(self.real, name)


class UntouchableCrm:
    """A CRM that must never be called: every method records the attempt and raises."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name):
        async def forbidden(*args, **kwargs):
            self.calls.append(name)
            raise AssertionError(f"the CRM was asked {name}")

        return forbidden
