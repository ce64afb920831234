"""Every rule of the article, and their combinations, as tables of calls and expected decisions."""
from dataclasses import replace

import pytest

from agi_daemon.core.decisions import (
    FAILED, LATE, NOT_ASKED, CreateRecords, LookupOutcome, MakeOffer, RoutingStatus, answered, decide,
)
from agi_daemon.core.model import (
    CreateFor, CreateWith, CrmMode, Direction, EntityRef, EntityType, LineCrm, Match, QueueStrategy, UnknownCaller,
)
from agi_daemon.core.rules import CallEntry, CrmAccess, TraceStep, UnknownLine, identify, screen

from tests.fakes.rules import ALICE_MOBILE, BLOCKED, CLIENT, LYON, PARIS, make_rules, two_line_rules

KNOWN_BY_BOB = Match(EntityRef(EntityType.CONTACT, 7), "bob", "Client SA")


def identify_incoming(rules, line, caller, linkedid="1700000000.1"):
    return identify(rules, CallEntry(Direction.INCOMING, line, caller), linkedid)


def identify_outgoing(rules, extension, number, linkedid="1700000000.2"):
    return identify(rules, CallEntry(Direction.OUTGOING, number, extension), linkedid)


def _lookup(rules, call, outcome, match):
    return {LookupOutcome.ANSWERED: lambda: answered(rules, call, match), LookupOutcome.LATE: lambda: LATE,
            LookupOutcome.FAILED: lambda: FAILED, LookupOutcome.NOT_ASKED: lambda: NOT_ASKED}[outcome]()


def incoming(rules, caller=CLIENT, line="01 84 88 00 00", lookup=LookupOutcome.ANSWERED, match=None):
    call = identify_incoming(rules, line, caller)
    screening = screen(rules, call)
    if screening.access is not CrmAccess.ALLOWED:
        lookup = LookupOutcome.NOT_ASKED
    return decide(rules, call, screening, _lookup(rules, call, lookup, match))


def outgoing(rules, number=CLIENT, extension="101", match=None):
    call = identify_outgoing(rules, extension, number)
    screening = screen(rules, call)
    lookup = LookupOutcome.ANSWERED if screening.access is CrmAccess.ALLOWED else LookupOutcome.NOT_ASKED
    return decide(rules, call, screening, _lookup(rules, call, lookup, match))


def fired(decision):
    return {step.rule for step in decision.trace if step.fired}


# --- R7 / R8: exclusions beat everything --------------------------------------------------

@pytest.mark.parametrize("mode", list(CrmMode))
@pytest.mark.parametrize("unknown_caller", list(UnknownCaller))
@pytest.mark.parametrize("create_for", list(CreateFor))
def test_exception_list_caller_is_routed_and_excluded_in_every_setting(mode, unknown_caller, create_for):
    rules = make_rules(mode=mode, unknown_caller=unknown_caller, create_for=create_for)
    decision = incoming(rules, caller="+33 1 40 00 00 00")
    assert decision.status is RoutingStatus.EXCLUDED
    assert decision.crm_action is None
    assert decision.route.queue_targets == ("Local/101@employees", "Local/102@employees")
    assert "R7" in fired(decision)


def test_exception_list_beats_employee_number():
    rules = make_rules()
    rules = replace(rules, crm=replace(rules.crm, exception_phones=frozenset({BLOCKED, ALICE_MOBILE})))
    decision = incoming(rules, caller=ALICE_MOBILE)
    assert fired(decision) >= {"R7"} and "R8" not in fired(decision)


@pytest.mark.parametrize("direction", ["incoming", "outgoing"])
def test_employee_mobile_is_routed_and_never_recorded(direction):
    rules = make_rules(create_for=CreateFor.ALL)
    decision = incoming(rules, caller=ALICE_MOBILE) if direction == "incoming" else outgoing(rules, number=ALICE_MOBILE, extension="102")
    assert decision.status is RoutingStatus.EXCLUDED
    assert decision.crm_action is None
    assert "R8" in fired(decision)


# --- R6: known client rings the responsible first --------------------------------------------

def test_known_client_rings_responsible_first_then_queue_group():
    decision = incoming(make_rules(), match=KNOWN_BY_BOB)
    assert decision.status is RoutingStatus.OK
    assert decision.route.responsible == "bob"
    assert decision.route.responsible_target == "Local/102@employees"
    assert decision.route.responsible_ring == 15
    assert decision.route.queue_targets == ("Local/101@employees", "Local/102@employees")
    assert decision.crm_action is None
    assert "R6" in fired(decision)


@pytest.mark.parametrize(
    "match, route_known, why",
    [
        (Match(EntityRef(EntityType.LEAD, 1), "dora"), True, "no extension"),
        (Match(EntityRef(EntityType.LEAD, 1), "zoe"), True, "not an employee"),
        (Match(EntityRef(EntityType.LEAD, 1), None), True, "not an employee"),
        (KNOWN_BY_BOB, False, "route_known_to_responsible is off"),
    ],
)
def test_known_client_without_reachable_responsible_goes_to_queue_group(match, route_known, why):
    decision = incoming(make_rules(route_known=route_known), match=match)
    assert decision.route.responsible is None
    assert decision.route.queue_group == "sales"
    step = next(step for step in decision.trace if step.rule == "R6")
    assert not step.fired and why in step.reason


def test_late_lookup_routes_known_or_not_to_queue_group_with_fallback_status():
    decision = incoming(make_rules(), lookup=LookupOutcome.LATE)
    assert decision.status is RoutingStatus.FALLBACK
    assert decision.route.responsible is None and decision.route.queue_group == "sales"
    assert decision.crm_action is None  # decided again once the lookup answers
    assert "deadline" in fired(decision)


# --- R1, R3, R4, R5, R9, R11: what a new client's call creates ------------------------------

@pytest.mark.parametrize(
    "create_for, direction, creates",
    [
        (CreateFor.INCOMING, "incoming", True),
        (CreateFor.INCOMING, "outgoing", False),
        (CreateFor.OUTGOING, "incoming", False),
        (CreateFor.OUTGOING, "outgoing", True),
        (CreateFor.ALL, "incoming", True),
        (CreateFor.ALL, "outgoing", True),
    ],
)
def test_create_for_decides_which_directions_create_records(create_for, direction, creates):
    rules = make_rules(create_for=create_for)
    decision = incoming(rules) if direction == "incoming" else outgoing(rules)
    assert isinstance(decision.crm_action, CreateRecords) is creates
    step = next(step for step in decision.trace if step.rule == "R4")
    assert step.fired is creates


def test_unknown_incoming_caller_in_classic_mode_creates_lead_for_queue_head():
    decision = incoming(make_rules(source="ADVERTISING"))
    plan = decision.crm_action.plan
    assert (plan.mode, plan.phone, plan.source, plan.responsible, plan.line) == (CrmMode.CLASSIC, CLIENT, "ADVERTISING", "alice", PARIS)
    assert plan.direction is Direction.INCOMING and plan.linkedid == "1700000000.1"
    assert plan.name == "+33 6 11 22 33 44"
    assert fired(decision) >= {"R1", "R3", "R4", "R5", "R9"}


def test_unknown_number_dialled_by_employee_creates_lead_for_that_employee():
    decision = outgoing(make_rules(create_for=CreateFor.OUTGOING), extension="102")
    assert decision.crm_action.plan.responsible == "bob"
    assert decision.route.trunk_target == "Local/+33611223344@trunk"


@pytest.mark.parametrize("create_with", list(CreateWith))
def test_simple_mode_creates_deal_in_pipeline_with_contact_or_company(create_with):
    decision = incoming(make_rules(mode=CrmMode.SIMPLE, create_with=create_with))
    plan = decision.crm_action.plan
    assert (plan.mode, plan.pipeline, plan.create_with) == (CrmMode.SIMPLE, "general", create_with)
    assert "R11" in fired(decision)


@pytest.mark.parametrize("direction", ["incoming", "outgoing"])
def test_offer_creates_nothing_and_offers_to_the_people_on_the_call(direction):
    rules = make_rules(unknown_caller=UnknownCaller.OFFER, create_for=CreateFor.ALL)
    decision = incoming(rules) if direction == "incoming" else outgoing(rules, extension="102")
    assert isinstance(decision.crm_action, MakeOffer)
    assert decision.crm_action.employees == (("alice", "bob") if direction == "incoming" else ("bob",))


@pytest.mark.parametrize("mode", list(CrmMode))
@pytest.mark.parametrize("unknown_caller", list(UnknownCaller))
def test_known_client_creates_nothing_in_any_mode(mode, unknown_caller):
    decision = incoming(make_rules(mode=mode, unknown_caller=unknown_caller), match=KNOWN_BY_BOB)
    assert decision.crm_action is None


def test_withheld_caller_is_routed_without_lookup():
    decision = incoming(make_rules(), caller="anonymous")
    assert decision.status is RoutingStatus.OK
    assert decision.crm_action is None and decision.route.queue_group == "sales"


def test_unknown_line_is_reported_not_guessed():
    assert isinstance(identify_incoming(make_rules(), "+33 4 00 00 00 00", CLIENT, "x"), UnknownLine)


def test_outgoing_call_uses_employee_line_or_first_line():
    rules = make_rules()
    assert identify_outgoing(rules, "101", CLIENT, "x").line.number == PARIS
    assert identify_outgoing(rules, "102", CLIENT, "x").line.number == PARIS  # bob has no line: first line
    assert identify_outgoing(rules, "999", CLIENT, "x").employee is None


def test_unknown_extension_dialling_out_creates_records_without_responsible():
    decision = outgoing(make_rules(create_for=CreateFor.OUTGOING), extension="999")
    assert decision.crm_action.plan.responsible is None


def test_ring_all_strategy_is_passed_to_the_dialplan():
    rules = make_rules()
    group = replace(rules.queue_groups["sales"], strategy=QueueStrategy.RING_ALL)
    decision = incoming(replace(rules, queue_groups={"sales": group}))
    assert decision.route.strategy is QueueStrategy.RING_ALL


def test_line_settings_are_per_line():
    """Two lines, each with settings of its own: each call gets its own line's, never the first
    line's nor the last one's."""
    rules = two_line_rules()
    rules = replace(rules, lines={
        PARIS: replace(rules.lines[PARIS], crm=LineCrm(UnknownCaller.CREATE, source="PARTNER")),
        LYON: replace(rules.lines[LYON], crm=LineCrm(UnknownCaller.OFFER, source="WEB")),
    })
    paris = incoming(rules, line="01 84 88 00 00").crm_action
    lyon = incoming(rules, line="04 78 00 00 00").crm_action
    assert isinstance(paris, CreateRecords) and (paris.plan.line, paris.plan.source) == (PARIS, "PARTNER")
    assert isinstance(lyon, MakeOffer)


@pytest.mark.parametrize(
    "entry, reason",
    [
        (CallEntry(Direction.INCOMING, "01 84 88 00 00", CLIENT), "line +33184880000 (Paris sales line): the number called"),
        (CallEntry(Direction.OUTGOING, CLIENT, "101"), "line +33184880000 (Paris sales line), the line of employee alice"),
        (CallEntry(Direction.OUTGOING, CLIENT, "102"),
         "line +33184880000 (Paris sales line), the first line of the config: employee bob has no line of their own"),
        (CallEntry(Direction.OUTGOING, CLIENT, "999"),
         "line +33184880000 (Paris sales line), the first line of the config: extension '999' is not an employee's"),
    ],
    ids=["incoming", "employee-line", "no-line", "unknown-extension"],
)
def test_decision_trace_starts_with_the_line_used_and_why(entry, reason):
    rules = make_rules(create_for=CreateFor.ALL)
    call = identify(rules, entry, "x")
    decision = decide(rules, call, screen(rules, call), answered(rules, call, None))
    assert decision.trace[0] == TraceStep("line", True, reason)
    assert decision.line.number == PARIS


def test_late_lookup_routes_to_the_queue_group_and_leaves_the_crm_work_for_later():
    rules = make_rules()
    call = identify_incoming(rules, "0184880000", CLIENT)
    decision = decide(rules, call, screen(rules, call), LATE)
    assert decision.status is RoutingStatus.FALLBACK and decision.crm_action is None
    assert decision.route.responsible is None and decision.route.queue_members == ("alice", "bob")
