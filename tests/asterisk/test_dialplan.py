"""dialplan/agi-daemon.conf and the generated fallback, run by a real Asterisk 22.

The daemon is played by ScriptedAgi, a few lines of asyncio that read the FastAGI request and
answer with raw `SET VARIABLE` commands (not the project's FastAGI server, on purpose: this
file tests the dialplan contract, not the server). Employees are Local/<ext>@employees and the
trunk Local/<number>@trunk (see tests/asterisk/sandbox.py); ring times are a few seconds.
"""
from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from agi_daemon.asterisk import variables
from agi_daemon.core.decisions import route_for
from agi_daemon.core.model import Direction
from agi_daemon.core.rules import CallEntry, CallFacts, identify
from tests.asterisk.ami_client import bridged_employee_channel, event_named, user_event
from tests.asterisk.sandbox import closed_port
from tests.fakes.rules import LYON, PARIS, two_line_rules

DIALPLAN = Path(__file__).resolve().parents[2] / "dialplan" / "agi-daemon.conf"
STASIS_DIALPLAN = DIALPLAN.with_name("agi-daemon-stasis.conf")
DIAL = DIALPLAN.with_name("agi-daemon-dial.conf")

# PARIS in_order: dora (no extension), alice 101, bob 102; 2 s each. LYON ring_all: alice 101 and bob 102, 3 s
CLIENT = "+33611223344"
EXTERNAL = "+33699887766"

RULES = two_line_rules(sales_ring=2, support=("alice", "bob"), support_ring=3, support_line_name="Lyon support line")


def employee(extension: str) -> str:
    return f"Local/{extension}@employees"


def ring_of(linkedid: str, extension: str | None = None):
    fields = {"linkedid": linkedid}
    if extension:
        fields["extension"] = extension
    return user_event("AgiDaemonTestRing", **fields)


class ScriptedAgi:
    """A FastAGI responder reduced to a script: for each route, the variables to set."""

    def __init__(self) -> None:
        self.answers: dict[str, dict[str, str]] = {}  # route -> {variable: value}
        self.requests: list[dict[str, str]] = []
        self.replies: list[bytes] = []
        self._arrived = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> "ScriptedAgi":
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            header: dict[str, str] = {}
            while True:
                line = await asyncio.wait_for(reader.readline(), 5)
                if line in (b"", b"\n"):
                    break
                key, _, value = line.decode().rstrip("\n").partition(": ")
                header[key] = value
            for name, value in self.answers.get(header.get("agi_network_script", ""), {}).items():
                writer.write(f'SET VARIABLE {name} "{value}"\n'.encode())
                await writer.drain()
                self.replies.append(await asyncio.wait_for(reader.readline(), 5))
            self.requests.append(header)
            self._arrived.set()
        finally:
            writer.close()

    async def wait_request(self, route: str, linkedid: str, timeout: float = 10.0) -> dict[str, str]:
        async def find() -> dict[str, str]:
            while True:
                for header in self.requests:
                    if header.get("agi_network_script") == route and header.get("agi_arg_1") == linkedid:
                        return header
                self._arrived.clear()
                await self._arrived.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {route} AGI request for {linkedid} within {timeout} s") from None


@pytest.fixture
def dialplan(asterisk):
    """The shared sandbox with this file's fallback, every employee answering, daemon down."""
    asterisk.copy_project_dialplan(reload=False)
    asterisk.write_fallback(RULES)  # reloads the dialplan
    for extension in ("101", "102"):
        asterisk.set_global(f"EMPLOYEE_{extension}", "")
    asterisk.set_agi_port(closed_port())
    return asterisk


@pytest.fixture
async def daemon(dialplan):
    agi = await ScriptedAgi().start()
    dialplan.set_agi_port(agi.port)
    try:
        yield agi
    finally:
        dialplan.set_agi_port(closed_port())
        await agi.close()


def call_end_args(header: dict[str, str]) -> dict[str, str]:
    return {name: header.get(f"agi_arg_{i}", "<missing>")
            for i, name in enumerate(variables.CALL_END_ARGS, start=1)}


# ---------------------------------------------------------------- (e) names, pure

def dialplan_text() -> str:
    return "\n".join(line.split(";", 1)[0] for line in DIALPLAN.read_text().splitlines())


def test_every_agi_daemon_variable_in_the_dialplan_is_defined_in_variables():
    defined = {value for name, value in vars(variables).items()
               if name.isupper() and isinstance(value, str) and value.startswith("AGI_DAEMON_")}
    used = {name for path in (DIALPLAN, STASIS_DIALPLAN, DIAL)
            for name in re.findall(r"\bAGI_DAEMON_[A-Z0-9_]+", path.read_text())}
    assert used, "the dialplan uses no AGI_DAEMON_ variable at all?"
    assert used <= defined, f"not in agi_daemon/asterisk/variables.py: {sorted(used - defined)}"


def test_dialplan_agi_calls_use_the_routes_and_argument_counts_of_variables():
    calls = re.findall(r"AGI\(\$\{AGI_DAEMON_URL\}/([a-z-]+),([^\n]*)\)\s*$", dialplan_text(), re.M)
    arity = {route: len(args.split(",")) for route, args in calls}
    assert arity == {
        variables.ROUTE_INCOMING: len(variables.ROUTING_ARGS),
        variables.ROUTE_OUTGOING: len(variables.ROUTING_ARGS),
        variables.ROUTE_CALL_END: len(variables.CALL_END_ARGS),
    }


def test_the_hangup_handler_passes_call_end_args_in_order():
    line = next(text for text in dialplan_text().splitlines() if f"/{variables.ROUTE_CALL_END}," in text)
    args = line.split(f"/{variables.ROUTE_CALL_END},", 1)[1].rsplit(")", 1)[0].split(",")
    expected = {
        "linkedid": "${CHANNEL(linkedid)}", "status": f"${{{variables.STATUS}}}",
        "direction": "${ARG1}", "exten": "${ARG2}", "callerid": "${ARG3}",
        "dialstatus": "${DIALSTATUS}", "answered_ms": "${ANSWEREDTIME_MS}",
        "peer": "${DIALEDPEERNUMBER}", "t0": f"${{{variables.STARTED}}}",
    }
    assert args == [expected[name] for name in variables.CALL_END_ARGS]


def test_both_variants_ask_the_daemon_then_dial_through_the_same_shared_contexts():
    for path in (DIALPLAN, STASIS_DIALPLAN):
        text = path.read_text()
        assert "#include agi-daemon-dial.conf" in text
        for direction in ("incoming", "outgoing"):
            entry = text.split(f"[agi-daemon-{direction}]", 1)[1].split("\n[", 1)[0]
            # after asking (the first daemon, then AGI_DAEMON_URL_2 if set), one way on: the shared contexts
            assert f"same => n,Goto(agi-daemon-dial-{direction},${{EXTEN}},1)" in entry, path.name
            assert "Dial(" not in entry


def test_stasis_variant_enters_the_application_with_direction_and_linkedid():
    calls = re.findall(r"Stasis\(([^\n]*)\)\s*$", STASIS_DIALPLAN.read_text(), re.M)
    app = f"${{IF($[\"${{{variables.APP}}}\" = \"\"]?agi-daemon:${{{variables.APP}}})}}"
    assert calls == [f"{app},incoming,${{CHANNEL(linkedid)}}", f"{app},outgoing,${{CHANNEL(linkedid)}}"]
    assert variables.STASIS_ARGS == ("direction", "linkedid")


def test_stasis_hangup_handler_sends_call_end_args_by_name():
    line = next(text for text in STASIS_DIALPLAN.read_text().splitlines() if "UserEvent(" in text)
    name, *fields = line.split("UserEvent(", 1)[1].rsplit(")", 1)[0].split(",")
    assert name == variables.CALL_END_EVENT
    assert [field.split(":", 1)[0] for field in fields] == list(variables.CALL_END_ARGS)


def test_employees_are_dialled_so_they_can_transfer_with_feature_codes():
    """`t`: the called party (the employee, incoming) may transfer; `T`: the calling party
    (the employee, outgoing). Checked for real by the Atxfer tests below."""
    text = DIAL.read_text()  # both variants dial through these shared contexts
    incoming = text.split("[agi-daemon-dial-incoming]", 1)[1].split("\n[", 1)[0]
    outgoing = text.split("[agi-daemon-dial-outgoing]", 1)[1].split("\n[", 1)[0]
    assert re.findall(r"Dial\(([^)]*)\)", incoming)
    assert all(dial.rsplit(",", 1)[1] == "t" for dial in re.findall(r"Dial\(([^)]*)\)", incoming))
    assert re.findall(r"Dial\(([^)]*)\)", outgoing) == ["${AGI_DAEMON_TRUNK},,T"]


# ---------------------------------------------------------------- (a) daemon down: fallback

@pytest.mark.asterisk
@pytest.mark.parametrize("delivered", [PARIS, "0184880000", "0033184880000"])
async def test_daemon_down_incoming_call_rings_first_member_with_an_extension(dialplan, asterisk_ami, delivered):
    call = await asterisk_ami.originate_incoming(delivered, CLIENT)
    ring = await asterisk_ami.wait_event(ring_of(call.linkedid), 5)
    assert ring["extension"] == "101"


@pytest.mark.asterisk
async def test_daemon_down_in_order_rings_next_member_when_first_does_not_answer(dialplan, asterisk_ami):
    dialplan.set_global("EMPLOYEE_101", "noanswer")
    call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
    await asterisk_ami.wait_event(ring_of(call.linkedid, "101"), 5)
    first = time.monotonic()
    await asterisk_ami.wait_event(ring_of(call.linkedid, "102"), 6)
    assert time.monotonic() - first >= 1.5  # after the 2 s of ringing 101
    answered = await asyncio.wait_for(call.response, 5)
    assert answered[-1]["Response"] == "Success"


@pytest.mark.asterisk
async def test_daemon_down_ring_all_rings_every_member_at_once(dialplan, asterisk_ami):
    call = await asterisk_ami.originate_incoming(LYON, CLIENT)
    for extension in ("101", "102"):
        await asterisk_ami.wait_event(ring_of(call.linkedid, extension), 5)


@pytest.mark.asterisk
@pytest.mark.parametrize("answer", [{}, {variables.STATUS: "error"}], ids=["silent", "error"])
async def test_daemon_without_decision_falls_back_to_queue_group(daemon, asterisk_ami, answer):
    daemon.answers[variables.ROUTE_INCOMING] = answer
    call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
    await daemon.wait_request(variables.ROUTE_INCOMING, call.linkedid, 5)
    ring = await asterisk_ami.wait_event(ring_of(call.linkedid), 5)
    assert ring["extension"] == "101"


@pytest.mark.asterisk
@pytest.mark.parametrize("generated", [True, False], ids=["unknown-line", "fallback-not-generated"])
async def test_line_missing_from_fallback_hangs_up_with_a_warning(dialplan, asterisk_ami, generated):
    if not generated:  # an admin who never ran `agi-daemon dialplan`: contexts without extensions
        (dialplan.etc / "agi-daemon-fallback.conf").write_text(
            "[agi-daemon-fallback-incoming]\n[agi-daemon-fallback-outgoing]\n")
        dialplan.reload_dialplan()
    line = "+33100000000"
    call = await asterisk_ami.originate_incoming(line, CLIENT)
    hangup = await asterisk_ami.wait_event(event_named("Hangup", linkedid=call.linkedid), 5)
    assert hangup["channel"].startswith(f"Local/{line}@agi-daemon-incoming")
    await asterisk_ami.no_event(ring_of(call.linkedid), 0.2)
    warning = f"no line for {line}" if generated else f"line {line} is not in agi-daemon-fallback-incoming"
    assert warning in (dialplan.dir / "log" / "full").read_text()


# ---------------------------------------------------------------- (b) the daemon decides

def known_client(responsible: str, responsible_ring: int = 2) -> dict[str, str]:
    return {
        variables.STATUS: "ok",
        variables.RESPONSIBLE: employee(responsible),
        variables.RESPONSIBLE_RING: str(responsible_ring),
        variables.QUEUE: f"{employee('101')}&{employee('102')}",
        variables.QUEUE_RING: "2",
        variables.QUEUE_STRATEGY: "in_order",
    }


@pytest.mark.asterisk
async def test_known_client_rings_the_responsible_first(daemon, asterisk_ami):
    daemon.answers[variables.ROUTE_INCOMING] = known_client("102")
    call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
    request = await daemon.wait_request(variables.ROUTE_INCOMING, call.linkedid, 5)
    assert (request["agi_extension"], request["agi_callerid"]) == (PARIS, CLIENT)
    assert all(reply.startswith(b"200 result=1") for reply in daemon.replies)
    ring = await asterisk_ami.wait_event(ring_of(call.linkedid), 5)
    assert ring["extension"] == "102"


@pytest.mark.asterisk
async def test_responsible_not_answering_then_queue_group_rings(daemon, dialplan, asterisk_ami):
    dialplan.set_global("EMPLOYEE_102", "noanswer")
    daemon.answers[variables.ROUTE_INCOMING] = known_client("102", responsible_ring=2)
    call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
    await asterisk_ami.wait_event(ring_of(call.linkedid, "102"), 5)
    first = time.monotonic()
    await asterisk_ami.wait_event(ring_of(call.linkedid, "101"), 6)
    assert time.monotonic() - first >= 1.5


@pytest.mark.asterisk
async def test_daemon_ring_all_dials_the_whole_queue(daemon, asterisk_ami):
    daemon.answers[variables.ROUTE_INCOMING] = {
        variables.STATUS: "fallback", variables.QUEUE: f"{employee('101')}&{employee('102')}",
        variables.QUEUE_RING: "3", variables.QUEUE_STRATEGY: "ring_all"}
    call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
    for extension in ("101", "102"):
        await asterisk_ami.wait_event(ring_of(call.linkedid, extension), 5)


# ---------------------------------------------------------------- (c) call-end from the hangup handler

@pytest.mark.asterisk
async def test_hangup_handler_reports_answered_call_to_call_end(daemon, asterisk_ami):
    daemon.answers[variables.ROUTE_INCOMING] = {
        variables.STATUS: "ok", variables.QUEUE: employee("102"), variables.QUEUE_RING: "5",
        variables.QUEUE_STRATEGY: "in_order"}
    before = time.time()
    call = await asterisk_ami.originate_incoming("0184880000", CLIENT)
    answered = await asyncio.wait_for(call.response, 5)
    assert answered[-1]["Response"] == "Success"
    await asyncio.sleep(0.3)
    await asterisk_ami.hangup_call(call.linkedid)
    args = call_end_args(await daemon.wait_request(variables.ROUTE_CALL_END, call.linkedid, 5))
    assert args["linkedid"] == call.linkedid
    assert args["status"] == "ok"
    assert args["direction"] == "incoming"
    assert args["exten"] == "0184880000"  # as delivered: the daemon normalises it
    assert args["callerid"] == CLIENT
    assert args["dialstatus"] == "ANSWER"
    assert args["answered_ms"].isdigit() and 200 <= int(args["answered_ms"]) < 5000
    assert args["peer"] == "102@employees"  # Local/102@employees: DIALEDPEERNUMBER drops "Local/"
    assert re.fullmatch(r"\d+\.\d{3}", args["t0"])
    assert before - 1 <= float(args["t0"]) <= time.time()


@pytest.mark.asterisk
async def test_hangup_handler_reports_missed_call_with_empty_fields_in_place(daemon, dialplan, asterisk_ami):
    dialplan.set_global("EMPLOYEE_101", "noanswer")
    daemon.answers[variables.ROUTE_INCOMING] = {
        variables.STATUS: "excluded", variables.QUEUE: employee("101"), variables.QUEUE_RING: "1"}
    call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
    args = call_end_args(await daemon.wait_request(variables.ROUTE_CALL_END, call.linkedid, 8))
    assert (args["status"], args["dialstatus"]) == ("excluded", "NOANSWER")
    assert (args["answered_ms"], args["peer"]) == ("", "")
    assert re.fullmatch(r"\d+\.\d{3}", args["t0"])


@pytest.mark.asterisk
async def test_hangup_handler_reports_a_call_the_daemon_did_not_route(daemon, asterisk_ami):
    daemon.answers[variables.ROUTE_INCOMING] = {}  # silent: fallback
    call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
    await asyncio.wait_for(call.response, 5)
    await asterisk_ami.hangup_call(call.linkedid)
    args = call_end_args(await daemon.wait_request(variables.ROUTE_CALL_END, call.linkedid, 5))
    assert (args["status"], args["dialstatus"], args["peer"]) == ("", "ANSWER", "101@employees")


# ---------------------------------------------------------------- (d) outgoing

@pytest.mark.asterisk
async def test_outgoing_call_goes_to_the_trunk_the_daemon_names(daemon, asterisk_ami):
    daemon.answers[variables.ROUTE_OUTGOING] = {
        variables.STATUS: "ok", variables.TRUNK: f"Local/{EXTERNAL}@trunk"}
    call = await asterisk_ami.originate_outgoing(EXTERNAL, "101")
    request = await daemon.wait_request(variables.ROUTE_OUTGOING, call.linkedid, 5)
    assert (request["agi_extension"], request["agi_callerid"]) == (EXTERNAL, "101")
    trunk = await asterisk_ami.wait_event(user_event("AgiDaemonTestTrunk", linkedid=call.linkedid), 5)
    assert trunk["number"] == EXTERNAL
    await asyncio.wait_for(call.response, 5)
    await asterisk_ami.hangup_call(call.linkedid)
    args = call_end_args(await daemon.wait_request(variables.ROUTE_CALL_END, call.linkedid, 5))
    assert (args["direction"], args["exten"], args["callerid"]) == ("outgoing", EXTERNAL, "101")
    assert (args["dialstatus"], args["peer"]) == ("ANSWER", f"{EXTERNAL}@trunk")


@pytest.mark.asterisk
@pytest.mark.parametrize("number", [EXTERNAL, "0699887766", "0033699887766", "699887766", "069988776", "112", "3654"])
async def test_daemon_down_outgoing_call_dials_the_number_the_daemon_would(dialplan, asterisk_ami, number):
    """The trunk gets the same form whether the daemon or the fallback routes the call: a
    trunk that needs E.164 must not fail only during outages."""
    call = await asterisk_ami.originate_outgoing(number, "101")
    trunk = await asterisk_ami.wait_event(user_event("AgiDaemonTestTrunk", linkedid=call.linkedid), 5)
    facts = identify(RULES, CallEntry(Direction.OUTGOING, number, "101"), call.linkedid)
    assert isinstance(facts, CallFacts)
    daemon_route, _ = route_for(RULES, facts, None)
    assert f"Local/{trunk['number']}@trunk" == daemon_route.trunk_target


# ---------------------------------------------------------------- transfers with feature codes

@pytest.mark.asterisk
async def test_answering_employee_can_attended_transfer_with_the_feature_code(dialplan, asterisk_ami):
    """AMI Atxfer works on the *called* employee because the dialplan dials with `t`
    (with `T` alone Asterisk ignores it: `T` is for the calling party)."""
    call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
    await asyncio.wait_for(call.response, 5)
    alice = await bridged_employee_channel(asterisk_ami, call.linkedid, "101")
    # "#" ends the digit collection at once instead of after transferdigittimeout.
    await asterisk_ami.action({"Action": "Atxfer", "Channel": alice, "Exten": "102#", "Context": "employees"})
    await asterisk_ami.wait_event(ring_of(call.linkedid, "102"), 5)
    await asyncio.sleep(0.3)  # 102 answers the consultation call
    await asterisk_ami.hangup(alice)
    transfer = await asterisk_ami.wait_event(event_named("AttendedTransfer", result="Success"), 5)
    assert transfer["origtransfererchannel"] == alice


@pytest.mark.asterisk
async def test_answering_employee_can_be_blind_transferred_over_ami(dialplan, asterisk_ami):
    call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
    await asyncio.wait_for(call.response, 5)
    alice = await bridged_employee_channel(asterisk_ami, call.linkedid, "101")
    await asterisk_ami.action({"Action": "BlindTransfer", "Channel": alice, "Exten": "102", "Context": "employees"})
    transfer = await asterisk_ami.wait_event(event_named("BlindTransfer", transfererchannel=alice), 5)
    assert (transfer["result"], transfer["extension"]) == ("Success", "102")


@pytest.mark.asterisk
async def test_calling_employee_can_attended_transfer_an_outgoing_call(dialplan, asterisk_ami):
    """Outgoing, the employee is the calling party: the dialplan dials the trunk with `T`.
    (In these tests the employee's channel is the ;2 half running agi-daemon-outgoing.)"""
    call = await asterisk_ami.originate_outgoing(EXTERNAL, "101")
    await asyncio.wait_for(call.response, 5)
    channels = await asterisk_ami.channels(call.linkedid)
    caller = next(c for c in channels if c.startswith(f"Local/{EXTERNAL}@agi-daemon-outgoing-") and c.endswith(";2"))
    await asterisk_ami.wait_event(event_named("BridgeEnter", channel=caller), 5)  # bridged with the trunk: may transfer
    await asterisk_ami.action({"Action": "Atxfer", "Channel": caller, "Exten": "102#", "Context": "employees"})
    await asterisk_ami.wait_event(ring_of(call.linkedid, "102"), 5)
    await asyncio.sleep(0.3)
    await asterisk_ami.hangup(caller)
    transfer = await asterisk_ami.wait_event(event_named("AttendedTransfer", origtransfererchannel=caller), 5)
    assert transfer["result"] == "Success"


# ---------------------------------------------------------------- (f) a second daemon (AGI_DAEMON_URL_2)

@pytest.fixture
async def second_daemon(dialplan):
    """The first daemon's address is a closed port, AGI_DAEMON_URL_2 a live ScriptedAgi."""
    agi = await ScriptedAgi().start()
    dialplan.set_global(variables.URL_2, f"agi://127.0.0.1:{agi.port}")
    try:
        yield agi
    finally:
        dialplan.set_global(variables.URL_2, "")
        await agi.close()


@pytest.mark.asterisk
async def test_first_daemon_down_the_second_routes_the_call_and_hears_how_it_ended(second_daemon, asterisk_ami):
    second_daemon.answers[variables.ROUTE_INCOMING] = known_client("102")
    call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
    request = await second_daemon.wait_request(variables.ROUTE_INCOMING, call.linkedid, 5)
    ring = await asterisk_ami.wait_event(ring_of(call.linkedid), 5)
    await asyncio.wait_for(call.response, 5)
    await asterisk_ami.hangup_call(call.linkedid)
    args = call_end_args(await second_daemon.wait_request(variables.ROUTE_CALL_END, call.linkedid, 5))
    assert (request["agi_extension"], request["agi_callerid"]) == (PARIS, CLIENT)
    assert ring["extension"] == "102"  # the responsible the second daemon named, not the fallback's 101
    assert (args["status"], args["dialstatus"], args["peer"]) == ("ok", "ANSWER", "102@employees")


@pytest.mark.asterisk
async def test_first_daemon_down_the_second_names_the_trunk_of_an_outgoing_call(second_daemon, asterisk_ami):
    named = "+33611112222"  # not the number dialled: only the second daemon's answer leads there
    second_daemon.answers[variables.ROUTE_OUTGOING] = {variables.STATUS: "ok", variables.TRUNK: f"Local/{named}@trunk"}
    call = await asterisk_ami.originate_outgoing(EXTERNAL, "101")
    await second_daemon.wait_request(variables.ROUTE_OUTGOING, call.linkedid, 5)
    trunk = await asterisk_ami.wait_event(user_event("AgiDaemonTestTrunk", linkedid=call.linkedid), 5)
    assert trunk["number"] == named


@pytest.mark.asterisk
async def test_both_daemons_down_the_call_still_falls_back_to_the_queue_group(dialplan, asterisk_ami):
    dialplan.set_global(variables.URL_2, f"agi://127.0.0.1:{closed_port()}")
    try:
        call = await asterisk_ami.originate_incoming(PARIS, CLIENT)
        ring = await asterisk_ami.wait_event(ring_of(call.linkedid), 5)
    finally:
        dialplan.set_global(variables.URL_2, "")
    assert ring["extension"] == "101"
