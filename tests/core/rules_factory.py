"""A small Rules builder for core tests: the example PBX in plain values, tweakable per case."""
from __future__ import annotations

from dataclasses import replace

from agi_daemon.core.model import (
    CreateFor, CreateWith, CrmMode, CrmPolicy, Dialing, Employee, Line, LineCrm, QueueGroup, Rules, UnknownCaller,
)

PARIS = "+33184880000"
CLIENT = "+33611223344"
ALICE_MOBILE = "+33612000001"
BLOCKED = "+33140000000"


def make_rules(
    *,
    mode: CrmMode = CrmMode.CLASSIC,
    create_with: CreateWith = CreateWith.CONTACT,
    unknown_caller: UnknownCaller = UnknownCaller.CREATE,
    create_for: CreateFor = CreateFor.INCOMING,
    route_known: bool = True,
    source: str = "CALL",
) -> Rules:
    employees = {
        "alice": Employee("alice", "Alice Martin", "101", (ALICE_MOBILE,), PARIS),
        "bob": Employee("bob", "Bob Durand", "102"),
        "dora": Employee("dora", "Dora No-Phone", None),
    }
    crm = LineCrm(unknown_caller, create_for, source, route_known, 15, True)
    return Rules(
        default_region="FR",
        employees=employees,
        queue_groups={"sales": QueueGroup("sales", ("alice", "bob"), ring_seconds=20)},
        lines={PARIS: Line(PARIS, "Paris sales line", "sales", crm)},
        crm=CrmPolicy(mode, "general", create_with, frozenset({BLOCKED}), frozenset()),
        dialing=Dialing("Local/{extension}@employees", "Local/{number}@trunk"),
    )


def with_line_crm(rules: Rules, **changes) -> Rules:
    line = rules.lines[PARIS]
    return replace(rules, lines={PARIS: replace(line, crm=replace(line.crm, **changes))})
