"""Fixtures of the embedded CRM tests: a real SQLite file in the test's tmp_path."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from agi_daemon.core.model import CreateWith, CrmMode, Direction, RecordPlan

LINE = "+33184880000"


@pytest.fixture
def database_url(crm_database_url: str) -> str:
    return crm_database_url


# `crm` (the store on a SQLite file in tmp_path, or a PostgreSQL database, opened) and the
# `databases` marker that runs a module on both come from tests/conftest.py.


PlanFactory = Callable[..., RecordPlan]


@pytest.fixture
def new_client() -> PlanFactory:
    """Builds the RecordPlan of a call from a new client: new_client(phone, linkedid, ...)."""
    return _plan


def _plan(
    phone: str,
    linkedid: str,
    *,
    mode: CrmMode = CrmMode.CLASSIC,
    create_with: CreateWith = CreateWith.CONTACT,
    responsible: str | None = "alice",
    pipeline: str = "general",
) -> RecordPlan:
    """The records a call from a new client on the Paris sales line would create."""
    return RecordPlan(
        mode=mode,
        phone=phone,
        name=f"Call from {phone}",
        source="CALL",
        responsible=responsible,
        linkedid=linkedid,
        line=LINE,
        direction=Direction.INCOMING,
        pipeline=pipeline,
        create_with=create_with,
    )
