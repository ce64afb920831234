"""The outbox's commands survive their stored form (JSON) unchanged, and a row stored by an
earlier version (before a field existed) still reads."""
from __future__ import annotations

from dataclasses import replace

import pytest

from agi_daemon.core.commands import CallCardChange, CreateCallRecords
from agi_daemon.core.model import Direction
from agi_daemon.crm.command_json import command_from_json, command_json, kind_of
from tests.crm.conftest import _plan

PLAN = _plan("+33611000001", "J1")


@pytest.mark.parametrize("command", [
    CreateCallRecords(PLAN),
    CreateCallRecords(replace(PLAN, contact_only=True)),
    CallCardChange("J1", "+33611000001", Direction.INCOMING, "+33184880000", ("alice", "bob"), True),
    CallCardChange("J1", "+33611000001", Direction.OUTGOING, "+33184880000", ("bob",), False),
], ids=["records", "contact-from-the-call-window", "card-shown", "card-hidden"])
def test_command_read_back_from_its_stored_form_is_the_same(command):
    assert command_from_json(kind_of(command), command_json(command)) == command


def test_records_stored_before_contact_only_existed_are_the_call_s_records():
    stored = command_json(CreateCallRecords(PLAN))
    del stored["contact_only"]
    assert command_from_json("create_records", stored) == CreateCallRecords(PLAN)
