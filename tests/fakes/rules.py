"""Hand-built Rules for tests: the example PBX in plain values, tweakable per case."""
from __future__ import annotations

from dataclasses import replace

from agi_daemon.core.model import (
    CreateFor, CreateWith, CrmMode, CrmPolicy, Dialing, Employee, Line, LineCrm, QueueGroup, QueueStrategy, Rules,
    UnknownCaller,
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


LYON = "+33478000000"


def two_line_rules(
    strategy: QueueStrategy = QueueStrategy.IN_ORDER,
    *,
    sales_ring: int = 7,
    support: tuple[str, ...] = ("bob",),
    support_ring: int = 30,
    support_line_name: str = "Lyon; support (after-sales)",
) -> Rules:
    """The PBX the dialplan tests run: Paris rings its queue group sales (dora, who has no
    extension, then alice 101 and bob 102) with `strategy`; Lyon rings support all at once."""
    return Rules(
        default_region="FR",
        employees={
            "alice": Employee("alice", "Alice Martin", "101"),
            "bob": Employee("bob", "Bob Durand", "102"),
            "dora": Employee("dora", "Dora No-Phone", None),
        },
        queue_groups={
            "sales": QueueGroup("sales", ("dora", "alice", "bob"), strategy, ring_seconds=sales_ring),
            "support": QueueGroup("support", support, QueueStrategy.RING_ALL, ring_seconds=support_ring),
        },
        lines={
            PARIS: Line(PARIS, "Paris sales line", "sales"),
            LYON: Line(LYON, support_line_name, "support"),
        },
        dialing=Dialing("Local/{extension}@employees", "Local/{number}@trunk"),
    )


NO_RULES = Rules(default_region="FR", employees={}, queue_groups={}, lines={})  # a PBX with nothing configured
