"""Group commit: writes queued together, and what happens to them when the CRM closes."""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future

import pytest
from sqlalchemy import create_engine

from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.crm.group_commit import GroupCommit


class StalledWriter:
    """A writer thread that never gets to run what it is given (a database lock held long)."""

    def __init__(self) -> None:
        self.given: list[Callable[..., object]] = []

    def submit(self, fn: Callable[..., object], *args: object) -> Future[object]:
        self.given.append(fn)
        return Future()


async def test_writes_still_queued_when_the_crm_closes_fail_as_unavailable(tmp_path) -> None:
    writer = StalledWriter()
    engine = create_engine(f"sqlite:///{tmp_path}/crm.sqlite3")
    writes = GroupCommit(engine, writer, lambda action: contextlib.nullcontext())  # type: ignore[arg-type]
    first = writes.submit("create records", lambda conn: 1)
    second = writes.submit("log a call", lambda conn: 2)

    abandoned = writes.abandon(CrmUnavailable("the CRM closed before this write could run"))

    assert abandoned == 2 and len(writer.given) == 1  # both waited for the one drain scheduled
    for future in (first, second):
        with pytest.raises(CrmUnavailable, match="closed before"):
            await future
    engine.dispose()
