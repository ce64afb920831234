"""Properties over what arrives from outside: the AGI codec, the AMI translation, the settings
loader (issue 12, item 13). Whatever the input, no exception other than the documented one
escapes, and nothing stalls the event loop over 100 ms (a loop-lag probe beside the work; a
stall must show in each of three runs, so a busy machine's scheduling is not taken for one).

`make fuzz` runs the same properties with many more examples (HYPOTHESIS_PROFILE=fuzz).
"""
from __future__ import annotations

import asyncio
import os
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agi_daemon.asterisk.agi.codec import AgiProtocolError, HeaderParser, ReplyParser
from agi_daemon.asterisk.agi.server import FastAgiServer
from agi_daemon.asterisk.ami.codec import AmiParser, AmiProtocolError
from agi_daemon.asterisk.ami.model import AmiEvent, AmiResync, ChannelSnapshot
from agi_daemon.asterisk.ami.translate import EVENT_NAMES, translate
from agi_daemon.core.tracker import TrackerState, step
from agi_daemon.settings import Problem, SettingsHolder, check_config
from agi_daemon import config_reload
from tests.settings.settings_helpers import MINIMAL, MINIMAL_ENV
from tests.settings.test_settings_hostile_files import alias_bomb, merge_bomb

from .loop_lag import STALL_LIMIT, LoopLag, least_lag, run_probed

settings.register_profile("fault-suite", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "5000")), deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fault-suite")
profile = settings.get_profile(PROFILE)

# ---- the AGI codec -------------------------------------------------------------------------

HEADER_LINES = st.sampled_from([
    b"agi_network: yes\n", b"agi_request: agi://127.0.0.1/incoming\n", b"agi_arg_1: \r\x1b[31m\n",
    b"agi_callerid: 0612345678\n", b"agi_extension: 0184880000\n", b"\n", b"\r\n", b"garbage\n",
    b"agi_arg_999999999999: x\n", b"agi_" + b"x" * 5000 + b": y\n", b"\xff\xfe\x00\n",
])
HEADER_BYTES = st.lists(st.one_of(HEADER_LINES, st.binary(max_size=64)), max_size=40)
REPLY_BYTES = st.lists(st.one_of(st.sampled_from([
    b"200 result=1\n", b"200 result=1 (value)\n", b"510 Invalid or unknown command\n", b"511 dead\n",
    b"520-Invalid command syntax.  Proper usage follows:\n", b" Usage: x\n", b"520 End of proper usage.\n",
    b"HANGUP\n", b"200 result=", b"999999999999999999999 x\n",
]), st.binary(max_size=64)), max_size=40)


@profile
@given(HEADER_BYTES)
def test_agi_header_parser_raises_only_protocol_errors_without_stalling(chunks):
    def parse() -> None:
        parser = HeaderParser()
        try:
            for chunk in chunks:
                if parser.feed(chunk) is not None:
                    break
            else:
                parser.eof()
        except AgiProtocolError:
            pass

    assert run_probed(parse) < STALL_LIMIT


@profile
@given(REPLY_BYTES)
def test_agi_reply_parser_raises_only_protocol_errors_without_stalling(chunks):
    def parse() -> None:
        parser = ReplyParser()
        try:
            for chunk in chunks:
                parser.feed(chunk)
        except AgiProtocolError:
            pass

    assert run_probed(parse) < STALL_LIMIT


@profile
@given(st.lists(HEADER_BYTES, min_size=1, max_size=8))
def test_fastagi_server_fed_any_bytes_keeps_serving_without_stalling(connections):
    async def scenario() -> float:
        async def incoming(session) -> None:
            await session.set_variable("AGI_DAEMON_STATUS", "ok")

        server = FastAgiServer({"incoming": incoming}, allowed_peers=["127.0.0.1"], header_timeout=0.5,
                               command_timeout=0.5)
        await server.start("127.0.0.1", 0)
        try:
            async with LoopLag() as lag:
                await asyncio.gather(*(_send(server.port, b"".join(chunks)) for chunks in connections))
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"agi_network: yes\nagi_request: agi://127.0.0.1/incoming\n\n")
            assert await asyncio.wait_for(reader.readline(), 2) == b'SET VARIABLE "AGI_DAEMON_STATUS" "ok"\n'
            writer.close()
        finally:
            await asyncio.wait_for(server.close(timeout=1), 5)
        return lag.worst

    assert least_lag(lambda: asyncio.run(scenario())) < STALL_LIMIT


async def _send(port: int, data: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        writer.write_eof()  # then whatever the server sends is read until it closes
        async with asyncio.timeout(2):
            await reader.read()
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()


# ---- the AMI translation -------------------------------------------------------------------

TEXT = st.one_of(st.text(max_size=20), st.sampled_from([
    "", "0", "-1", "1e308", "inf", "nan", "99:99:99", "1700000000.1", "agi-daemon-incoming", "agi-daemon-outgoing",
    "Local/101@employees-00000001;1", "PJSIP/101-0000", "Success", "Fail", "ANSWER", "Up", "\r\n", "x" * 300,
]))
FIELD_NAMES = ["Application", "BridgeId", "BridgeUniqueid", "CallerIDNum", "Cause", "Channel", "ChannelStateDesc",
               "ConnectedLineNum", "Context", "DestBridgeUniqueid", "DialStatus", "DialString", "Duration", "Exten",
               "Extension", "Linkedid", "Message", "Result", "Timestamp", "TransferTargetExten", "Uniqueid",
               "DestUniqueid", "DestChannel", "DestLinkedid", "TransfererUniqueid", "TransfereeUniqueid",
               "TransfererChannel", "TargetUniqueid", "OrigTransfererUniqueid", "SecondTransfererUniqueid"]
EVENTS = st.builds(
    lambda name, fields, at: AmiEvent(name, {"Event": name, **fields}, at),
    st.sampled_from(sorted(EVENT_NAMES) + ["Newstate", "VarSet"]),
    st.dictionaries(st.sampled_from(FIELD_NAMES), TEXT, max_size=len(FIELD_NAMES)),
    st.floats(min_value=0, max_value=4e9),  # the daemon's own clock reading: Timestamp is the outside one
)


SNAPSHOTS = st.builds(ChannelSnapshot, *([TEXT] * 10), st.integers(min_value=-2**31, max_value=2**31))


@profile
@given(st.lists(EVENTS, max_size=30), st.binary(max_size=2000), st.lists(SNAPSHOTS, max_size=5))
def test_ami_bytes_and_events_translate_and_track_without_exception_or_stall(events, wire, live):
    rules = SettingsHolder(_config_file(), MINIMAL_ENV).current.rules

    def track() -> None:
        parser = AmiParser()
        try:
            parser.feed(b"Asterisk Call Manager/9.0.0\r\n" + wire)
        except AmiProtocolError:
            pass
        state = TrackerState()
        for event in [AmiResync(tuple(live), 1.7e9), *events, AmiResync(())]:
            translated = translate(event)
            if translated is not None:
                state, _ = step(rules, state, translated)

    assert run_probed(track) < STALL_LIMIT


# ---- the settings loader -------------------------------------------------------------------

YAML_PIECES = st.sampled_from([
    "daemon:", "asterisk:", "numbers:", "employees:", "queue_groups:", "  ", "    ", "- ", "a: ", "b: &x ", "*x",
    "<<: *x", "[", "]", "{", "}", ", ", ": ", "\n", "\t", "\0", "\x1b", "'", '"', "#", "&a ", "*a", "!!python/object ",
    "9" * 5000, "${AMI_SECRET}", "${NOPE}", "secret_file: /dev/zero", "secret_file: .", "listen: \"[::1:1\"",
    "{extension:>50000000}", "? ", "|", ">", "---", "...", "%YAML 1.1", "%YAML 1.", "!!int ", "!!timestamp ",
    "!!float ", "!!binary ", "!!set ", "!!omap ", "!!str ", "\ufeff", "\u2028",
])
YAML_TEXT = st.one_of(
    st.lists(YAML_PIECES, max_size=60).map("".join),
    st.text(alphabet=string.printable + "\0\x1b\u2028", max_size=400),
    st.lists(st.sampled_from(MINIMAL.splitlines(keepends=True) + ["  x: &a [1, 2]\n", "  y: *a\n", "  <<: *a\n"]),
             max_size=20).map("".join),
)


@profile
@given(YAML_TEXT)
@example(alias_bomb())
@example(merge_bomb())
@example(MINIMAL + "deep: " + "[" * 5000 + "]" * 5000 + "\n")
def test_settings_loader_gives_problems_not_exceptions_and_never_stalls_a_reload(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "agi-daemon.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        problems: list[Problem] = []

        async def reload_beside_the_probe() -> float:
            async with LoopLag() as lag:
                problems.extend(await config_reload.in_thread(lambda: check_config(path, MINIMAL_ENV), timeout=10))
            return lag.worst

        assert least_lag(lambda: asyncio.run(reload_beside_the_probe())) < STALL_LIMIT
        assert all(isinstance(problem, Problem) for problem in problems)


_CONFIG: list[Path] = []


def _config_file() -> Path:
    if not _CONFIG:
        folder = Path(tempfile.mkdtemp(prefix="agi-daemon-properties-"))
        (folder / "agi-daemon.yaml").write_text(MINIMAL)
        _CONFIG.append(folder / "agi-daemon.yaml")
    return _CONFIG[0]
