"""The FastAGI codec without sockets: header, replies, command encoding."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agi_daemon.asterisk.agi.codec import (
    MAX_COMMAND_BYTES,
    AgiProtocolError,
    AgiRequest,
    HangupNotice,
    HeaderParser,
    Reply,
    ReplyParser,
    encode_command,
    get_variable,
    redact,
    set_variable,
    verbose,
)

# What Asterisk 22 sends for AGI(agi://127.0.0.1:4573/incoming?x=1,1700000000.7,,3).
ASTERISK_HEADER = (
    b"agi_network: yes\n"
    b"agi_network_script: incoming?x=1\n"
    b"agi_request: agi://127.0.0.1:4573/incoming?x=1\n"
    b"agi_channel: Local/0184880000@agi-daemon-incoming-00000001;2\n"
    b"agi_language: en\n"
    b"agi_type: Local\n"
    b"agi_uniqueid: 1700000000.8\n"
    b"agi_version: 22.0.0\n"
    b"agi_callerid: 0612000001\n"
    b"agi_calleridname: Jean Dupont\n"
    b"agi_callingpres: 0\n"
    b"agi_callingani2: 0\n"
    b"agi_callington: 0\n"
    b"agi_callingtns: 0\n"
    b"agi_dnid: unknown\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: agi-daemon-incoming\n"
    b"agi_extension: 0184880000\n"
    b"agi_priority: 2\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 140230395537088\n"
    b"agi_arg_1: 1700000000.7\n"
    b"agi_arg_2: \n"
    b"agi_arg_3:  3 spaced \n"
    b"\n"
)


def parse_header(data: bytes, **limits: int) -> AgiRequest:
    request = HeaderParser(**limits).feed(data)
    assert request is not None
    return request


def asterisk_parse_args(line: str) -> list[str]:
    """res_agi.c parse_args, transcribed: how Asterisk splits a command line into words."""
    words: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for char in line:
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and current is None:
                current = []
                words.append("")
            continue
        if char in " \t" and not quoted and not escaped:
            if current is not None:
                words[-1] = "".join(current)
            current = None
            continue
        if char == "\\" and not escaped:
            escaped = True
            continue
        if current is None:
            current = []
            words.append("")
        current.append(char)
        escaped = False
    if current is not None:
        words[-1] = "".join(current)
    return words


# Header


def test_asterisk_header_gives_every_field():
    request = parse_header(ASTERISK_HEADER)
    assert request.route == "incoming"
    assert request.args == ("1700000000.7", "", " 3 spaced ")
    assert request.channel == "Local/0184880000@agi-daemon-incoming-00000001;2"
    assert request.uniqueid == "1700000000.8"
    assert request.callerid == "0612000001"
    assert request.calleridname == "Jean Dupont"
    assert request.context == "agi-daemon-incoming"
    assert request.extension == "0184880000"
    assert request.priority == "2"
    assert request.dnid == "unknown"
    assert request.env["agi_accountcode"] == ""
    assert request.env["agi_threadid"] == "140230395537088"


@pytest.mark.parametrize(
    ("lines", "route"),
    [
        ([b"agi_network_script: incoming?x=1", b"agi_request: agi://h/other"], "incoming"),
        ([b"agi_network_script: /call-end/"], "call-end"),
        ([b"agi_request: agi://127.0.0.1:4573/outgoing?a=b"], "outgoing"),
        ([b"agi_request: agi://127.0.0.1"], ""),
        ([b"agi_request: /var/lib/asterisk/agi-bin/script.agi"], "var/lib/asterisk/agi-bin/script.agi"),
        ([b"agi_channel: SIP/x"], ""),
    ],
)
def test_request_path_gives_route_without_slash_or_query(lines, route):
    assert parse_header(b"\n".join(lines) + b"\n\n").route == route


@pytest.mark.parametrize(
    ("lines", "args"),
    [
        ([], ()),
        ([b"agi_arg_1: a"], ("a",)),
        ([b"agi_arg_2: b", b"agi_arg_1: a", b"agi_arg_3: c"], ("a", "b", "c")),
        ([b"agi_arg_1: a", b"agi_arg_3: c"], ("a",)),  # stops at the first gap
        ([b"agi_arg_1:", b"agi_arg_2: x:y"], ("", "x:y")),
    ],
)
def test_numbered_arguments_become_args_in_order(lines, args):
    assert parse_header(b"".join(line + b"\n" for line in [b"agi_request: r", *lines]) + b"\n").args == args


def test_unknown_caller_id_stays_unknown():
    request = parse_header(b"agi_callerid: unknown\nagi_calleridname: unknown\n\n")
    assert (request.callerid, request.calleridname) == ("unknown", "unknown")


def test_missing_variables_are_empty_strings():
    request = parse_header(b"agi_request: agi://h/incoming\n\n")
    assert (request.channel, request.uniqueid, request.callerid, request.dnid) == ("", "", "", "")


def test_header_fed_byte_by_byte_gives_same_request():
    parser = HeaderParser()
    results = [parser.feed(ASTERISK_HEADER[i : i + 1]) for i in range(len(ASTERISK_HEADER))]
    assert results[:-1] == [None] * (len(ASTERISK_HEADER) - 1)
    assert results[-1] == parse_header(ASTERISK_HEADER)


@given(
    cuts=st.lists(st.integers(min_value=0, max_value=len(ASTERISK_HEADER) + 20), max_size=6),
    crlf=st.booleans(),
)
def test_header_split_anywhere_gives_same_request_and_remainder(cuts, crlf):
    data = ASTERISK_HEADER.replace(b"\n", b"\r\n") if crlf else ASTERISK_HEADER
    data += b"HANGUP\n"
    bounds = sorted({0, len(data), *(min(cut, len(data)) for cut in cuts)})
    parser = HeaderParser()
    results = []
    for start, stop in itertools.pairwise(bounds):
        if results and results[-1] is not None:
            break
        results.append(parser.feed(data[start:stop]))
    assert results[-1] == parse_header(ASTERISK_HEADER)
    assert results[-1].env["agi_arg_3"] == " 3 spaced "
    consumed = bounds[len(results)]
    assert parser.remainder + data[consumed:] == b"HANGUP\n"


def test_malformed_line_fed_byte_by_byte_raises_once_complete():
    parser = HeaderParser()
    data = b"agi_a: 1\nagi_b 2"
    for i in range(len(data)):
        assert parser.feed(data[i : i + 1]) is None
    with pytest.raises(AgiProtocolError, match="line 2 is not"):
        parser.feed(b"\n")


def test_crlf_header_lines_are_accepted():
    request = parse_header(b"agi_network_script: incoming\r\nagi_uniqueid: 1.2\r\n\r\n")
    assert (request.route, request.uniqueid) == ("incoming", "1.2")


def test_bytes_after_empty_line_are_kept_as_remainder():
    parser = HeaderParser()
    assert parser.feed(b"agi_request: agi://h/incoming\n\nHANGUP\n2") is not None
    assert parser.remainder == b"HANGUP\n2"


def test_invalid_utf8_is_replaced_not_refused():
    request = parse_header(b"agi_calleridname: Ren\xe9\n\n")
    assert request.calleridname == "Ren\ufffd"


def test_env_is_read_only():
    request = parse_header(ASTERISK_HEADER)
    with pytest.raises(TypeError):
        request.env["agi_callerid"] = "x"  # type: ignore[index]


def test_request_repr_leaves_out_phone_numbers():
    text = repr(parse_header(ASTERISK_HEADER))
    assert "0612000001" not in text and "0184880000" not in text
    assert text == (
        "AgiRequest(route='incoming', uniqueid='1700000000.8',"
        " channel='Local/…0000@agi-daemon-incoming-…0001;2')"
    )


@pytest.mark.parametrize(
    ("channel", "shown"),
    [
        ("PJSIP/101-0000002a", "PJSIP/101-…0002a"),
        ("PJSIP/trunk-00000011", "PJSIP/trunk-…0011"),
        ("Local/+33184880000@agi-daemon-incoming-0000abcd;1", "Local/+…0000@agi-daemon-incoming-0000abcd;1"),
        ("", ""),
    ],
)
def test_redact_keeps_last_four_digits_of_long_runs(channel, shown):
    assert redact(channel) == shown


def test_header_exactly_at_limits_is_accepted():
    data = b"agi_a: 1\nagi_b: 2\n\n"
    assert parse_header(data, max_header_bytes=len(data), max_header_lines=2).env == {"agi_a": "1", "agi_b": "2"}


@pytest.mark.parametrize(
    ("chunks", "limits", "message"),
    [
        ([b"agi_request\n"], {}, "line 1 is not"),
        ([b"agi_a: 1\nnot a header line\n"], {}, "line 2 is not"),
        ([b"agi bad: 1\n"], {}, "line 1 is not"),
        ([b": value\n"], {}, "line 1 is not"),
        ([b"agi_a: 1\nagi_b: 2\nagi_a: 3\n\n"], {}, "line 3 repeats agi_a"),
        ([b"\n"], {}, "empty header"),
        ([b"agi_a: 1\nagi_b: 2\n\n"], {"max_header_bytes": 18}, "longer than 18 bytes"),
        ([b"agi_a: " + b"x" * 100], {"max_header_bytes": 64}, "longer than 64 bytes"),
        ([b"agi_a: 1\n", b"agi_b: " + b"x" * 60], {"max_header_bytes": 64}, "longer than 64 bytes"),
        ([b"agi_a: 1\nagi_b: 2\nagi_c: 3\n"], {"max_header_lines": 2}, "more than 2 lines"),
    ],
)
def test_bad_header_raises_protocol_error(chunks, limits, message):
    parser = HeaderParser(**limits)
    with pytest.raises(AgiProtocolError, match=message):
        for chunk in chunks:
            parser.feed(chunk)


@pytest.mark.parametrize("received", [b"", b"agi_request: agi://h/incoming\n", b"agi_requ"])
def test_eof_before_empty_line_raises_protocol_error(received):
    parser = HeaderParser()
    assert parser.feed(received) is None
    with pytest.raises(AgiProtocolError, match="before the empty line"):
        parser.eof()


def test_eof_after_complete_header_is_fine():
    parser = HeaderParser()
    parser.feed(b"agi_a: 1\n\n")
    parser.eof()


# Replies


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"200 result=1\n", [Reply(200, "1", None, "200 result=1")]),
        (b"200 result=0\n", [Reply(200, "0", None, "200 result=0")]),
        (b"200 result=-1\n", [Reply(200, "-1", None, "200 result=-1")]),
        (b"200 result=1 (hello world)\n", [Reply(200, "1", "hello world", "200 result=1 (hello world)")]),
        (b"200 result=1 (a (b) c)\n", [Reply(200, "1", "a (b) c", "200 result=1 (a (b) c)")]),
        (b"200 result=1 ()\n", [Reply(200, "1", "", "200 result=1 ()")]),
        (
            b"200 result=0 (timeout) endpos=12345\n",
            [Reply(200, "0", "timeout", "200 result=0 (timeout) endpos=12345")],
        ),
        (b"200 result=1 endpos=80\r\n", [Reply(200, "1", None, "200 result=1 endpos=80")]),
        (b"510 Invalid or unknown command\n", [Reply(510, None, None, "510 Invalid or unknown command")]),
        (
            b"511 Command Not Permitted on a dead channel\n",
            [Reply(511, None, None, "511 Command Not Permitted on a dead channel")],
        ),
        (
            b"520 Invalid command syntax.  Proper usage not available.\n",
            [Reply(520, None, None, "520 Invalid command syntax.  Proper usage not available.")],
        ),
        (b"503 result=-2 Memory allocation failure\n", [Reply(503, "-2", None, "503 result=-2 Memory allocation failure")]),
        (b"HANGUP\n", [HangupNotice()]),
        (b"HANGUP\n200 result=1\n", [HangupNotice(), Reply(200, "1", None, "200 result=1")]),
        (b"200 result=1\nHANGUP\n", [Reply(200, "1", None, "200 result=1"), HangupNotice()]),
        (b"200 result=1", []),  # no newline yet
    ],
)
def test_reply_lines_parse(data, expected):
    assert ReplyParser().feed(data) == expected


USAGE_BLOCK = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b" Usage: GET VARIABLE <variablename>\n"
    b"Example return code: 200 result=1 (testvariable)\n"
    b"HANGUP\n"
    b"520 End of proper usage.\n"
)


def test_multi_line_520_is_one_reply_with_every_line():
    [reply] = ReplyParser().feed(USAGE_BLOCK)
    assert reply.code == 520 and reply.result is None
    assert reply.text.splitlines() == USAGE_BLOCK.decode().splitlines()


def test_multi_line_520_fed_byte_by_byte_then_hangup_and_reply():
    parser = ReplyParser()
    data = b"HANGUP\n" + USAGE_BLOCK + b"HANGUP\n200 result=1 (x)\n"
    items = [item for i in range(len(data)) for item in parser.feed(data[i : i + 1])]
    assert [type(item).__name__ for item in items] == ["HangupNotice", "Reply", "HangupNotice", "Reply"]
    assert items[1].code == 520 and items[3] == Reply(200, "1", "x", "200 result=1 (x)")


def test_usage_without_final_newline_still_ends_the_block():
    data = b"520-Invalid command syntax.  Proper usage follows:\nAnswers channel.520 End of proper usage.\n"
    [reply] = ReplyParser().feed(data)
    assert reply.code == 520


@pytest.mark.parametrize("line", [b"hello\n", b"20 result=1\n", b"\n", b"OK 200\n"])
def test_unexpected_reply_line_raises_protocol_error(line):
    with pytest.raises(AgiProtocolError, match="unexpected line"):
        ReplyParser().feed(line)


def test_reply_line_over_limit_raises_protocol_error():
    with pytest.raises(AgiProtocolError, match="longer than 32 bytes"):
        ReplyParser(max_line_bytes=32).feed(b"200 result=1 (" + b"x" * 40)


def test_usage_block_over_line_limit_raises_protocol_error():
    parser = ReplyParser(max_usage_lines=3)
    with pytest.raises(AgiProtocolError, match="longer than 3 lines"):
        parser.feed(b"520-Invalid\n" + b"usage\n" * 5)


@pytest.mark.parametrize("data", [b"200 res", b"520-Invalid command syntax.\nusage\n"])
def test_eof_in_middle_of_reply_raises_protocol_error(data):
    parser = ReplyParser()
    parser.feed(data)
    with pytest.raises(AgiProtocolError, match="middle of a reply"):
        parser.eof()


# Commands


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (set_variable("AGI_DAEMON_STATUS", "ok"), b'SET VARIABLE "AGI_DAEMON_STATUS" "ok"\n'),
        (set_variable("X", ""), b'SET VARIABLE "X" ""\n'),
        (set_variable("X", 'say "hi"'), b'SET VARIABLE "X" "say \\"hi\\""\n'),
        (set_variable("X", "C:\\dir\\"), b'SET VARIABLE "X" "C:\\\\dir\\\\"\n'),
        (set_variable("X", 'a\\"b'), b'SET VARIABLE "X" "a\\\\\\"b"\n'),
        (set_variable("X", "a\nHANGUP\r\nb\0c"), b'SET VARIABLE "X" "a HANGUP  b c"\n'),
        (set_variable("X", "PJSIP/101&PJSIP/102"), b'SET VARIABLE "X" "PJSIP/101&PJSIP/102"\n'),
        (set_variable("X", "Zoé"), 'SET VARIABLE "X" "Zoé"\n'.encode()),
        (get_variable("CHANNEL(linkedid)"), b'GET VARIABLE "CHANNEL(linkedid)"\n'),
        (verbose("routing done"), b'VERBOSE "routing done" "1"\n'),
        (verbose("x", level=3), b'VERBOSE "x" "3"\n'),
        (encode_command("ANSWER"), b"ANSWER\n"),
        (encode_command("EXEC", "Wait", 1), b'EXEC "Wait" "1"\n'),
    ],
)
def test_commands_encode_as_one_quoted_line(command, expected):
    assert command == expected


@pytest.mark.parametrize(
    "name", ["", "A B", "X\nSET", 'X"', "X;Y", "X=1", "X,Y", "NAME\\", "Zoé", "${X}"]
)
def test_invalid_variable_name_raises_value_error(name):
    with pytest.raises(ValueError, match="not a channel variable name"):
        set_variable(name, "v")
    with pytest.raises(ValueError, match="not a channel variable name"):
        get_variable(name)


@pytest.mark.parametrize("command", ["", "SET VARIABLE\n", "SET  VARIABLE", 'SET "X"', "SET_VARIABLE", " ANSWER"])
def test_invalid_command_words_raise_value_error(command):
    with pytest.raises(ValueError, match="not an AGI command"):
        encode_command(command)


@pytest.mark.parametrize("level", [0, 5, -1])
def test_verbose_level_outside_1_to_4_raises_value_error(level):
    with pytest.raises(ValueError, match="level"):
        verbose("x", level)


def test_command_longer_than_asterisk_buffer_raises_value_error():
    overhead = len(b'SET VARIABLE "X" ""\n')
    assert len(set_variable("X", "v" * (MAX_COMMAND_BYTES - overhead))) == MAX_COMMAND_BYTES
    with pytest.raises(ValueError, match="at most 2047"):
        set_variable("X", "v" * (MAX_COMMAND_BYTES - overhead + 1))
    with pytest.raises(ValueError, match="at most 2047"):
        set_variable("X", '"' * 1100)  # escaping doubles it


text_without_surrogates = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@given(value=text_without_surrogates)
def test_any_value_round_trips_as_one_line_with_no_unescaped_quote(value):
    line = set_variable("AGI_DAEMON_QUEUE", value)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert b"\r" not in line and b"\0" not in line
    text = line.decode()[:-1]
    quoted_value = text.removeprefix('SET VARIABLE "AGI_DAEMON_QUEUE" ')
    assert quoted_value.startswith('"') and quoted_value.endswith('"')
    inner = quoted_value[1:-1]
    escaped = False
    for char in inner:  # every quote inside is escaped, every backslash escapes something
        if escaped:
            assert char in '\\"'
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            assert char != '"'
    assert not escaped
    expected = value.replace("\r", " ").replace("\n", " ").replace("\0", " ")
    assert asterisk_parse_args(text) == ["SET", "VARIABLE", "AGI_DAEMON_QUEUE", expected]


@given(values=st.lists(text_without_surrogates, max_size=4))
def test_any_values_parse_back_as_separate_arguments(values):
    text = encode_command("EXEC", *values).decode()[:-1]
    cleaned = [v.replace("\r", " ").replace("\n", " ").replace("\0", " ") for v in values]
    assert asterisk_parse_args(text) == ["EXEC", *cleaned]
