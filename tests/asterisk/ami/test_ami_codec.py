"""The sans-IO AMI codec, without sockets."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agi_daemon.asterisk.ami import AmiFields, AmiParser, AmiProtocolError, encode_action

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
STREAM = (
    BANNER
    + b"Response: Success\r\nActionID: agid-1\r\nMessage: Authentication accepted\r\n\r\n"
    + b"Event: Newchannel\r\nChannel: PJSIP/101-00000001\r\nCallerIDName: Ren\xc3\xa9e\r\n"
    + b"Uniqueid: 1700000000.1\r\nLinkedid: 1700000000.1\r\n\r\n"
    + b"Event: VarSet\r\nVariable: X\r\nValue: 1\r\n\r\n"
    + b"Event: OriginateResponse\r\nActionID: agid-7\r\nResponse: Success\r\n\r\n"
)


def parse_all(parser: AmiParser, chunks: list[bytes]) -> list[AmiFields]:
    return [message for chunk in chunks for message in parser.feed(chunk)]


def test_whole_stream_yields_banner_and_messages_in_order() -> None:
    parser = AmiParser()
    messages = parser.feed(STREAM)
    assert parser.banner == "Asterisk Call Manager/9.0.0"
    assert [m.get("Event", m.get("Response")) for m in messages] == [
        "Success", "Newchannel", "VarSet", "OriginateResponse"]
    assert messages[1]["CallerIDName"] == "Renée"


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=30))
def test_any_split_into_reads_yields_the_same_messages(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert parse_all(AmiParser(), chunks) == AmiParser().feed(STREAM)


def test_utf8_character_split_between_reads_is_kept() -> None:
    cut = STREAM.index(b"\xc3") + 1
    messages = parse_all(AmiParser(), [STREAM[:cut], STREAM[cut:]])
    assert messages[1]["CallerIDName"] == "Renée"


def test_unwanted_event_without_actionid_is_skipped_before_decoding() -> None:
    seen: list[str] = []

    def wanted(name: str) -> bool:
        seen.append(name)
        return name == "Newchannel"

    messages = AmiParser(wanted=wanted).feed(STREAM)
    assert [m.get("Event") for m in messages] == [None, "Newchannel", "OriginateResponse"]
    assert seen == ["Newchannel", "VarSet"]  # events with an ActionID are always parsed


def test_repeated_header_values_are_joined_by_newlines() -> None:
    [message] = AmiParser().feed(
        BANNER + b"Response: Success\r\nOutput: line 1\r\nOutput: line 2\r\n\r\n")
    assert message["output"] == "line 1\nline 2"


def test_keys_are_case_insensitive_and_keep_their_spelling() -> None:
    [message] = AmiParser().feed(BANNER + b"Event: Hangup\r\nUniqueID: 1.1\r\n\r\n")
    assert message["Uniqueid"] == message["uniqueid"] == "1.1"
    assert list(message) == ["Event", "UniqueID"]


def test_value_with_colons_and_empty_value_are_kept() -> None:
    [message] = AmiParser().feed(BANNER + b"Event: X\r\nAppData: a:b: c\r\nAccountCode: \r\n\r\n")
    assert message["AppData"] == "a:b: c"
    assert message["AccountCode"] == ""


def test_non_ami_banner_raises_protocol_error() -> None:
    with pytest.raises(AmiProtocolError, match="not an AMI peer"):
        AmiParser().feed(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def test_message_without_end_beyond_limit_raises_protocol_error() -> None:
    parser = AmiParser(max_message=1000)
    parser.feed(BANNER)
    with pytest.raises(AmiProtocolError, match="longer than 1000"):
        for _ in range(20):
            parser.feed(b"Event: Flood\r\nData: " + b"x" * 100 + b"\r\n")


def test_encode_action_writes_action_id_and_repeats_sequence_values() -> None:
    data = encode_action("Originate", "agid-3", {"Channel": "Local/101@employees",
                                                  "Variable": ["A=1", "B=2"]})
    assert data == (b"Action: Originate\r\nActionID: agid-3\r\nChannel: Local/101@employees\r\n"
                    b"Variable: A=1\r\nVariable: B=2\r\n\r\n")


@pytest.mark.parametrize("fields", [
    {"Channel": "x\r\nAction: Hangup"},
    {"Bad Key": "x"},
    {"Key:": "x"},
    {"": "x"},
])
def test_encode_action_with_line_break_or_bad_key_raises(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        encode_action("Status", "agid-1", fields)


def test_fields_are_read_only_and_hashable() -> None:
    fields = AmiFields({"Event": "Hangup", "Cause": "16"})
    with pytest.raises(TypeError):
        fields["Cause"] = "17"  # type: ignore[index]
    assert hash(fields) == hash(AmiFields({"event": "Hangup", "cause": "16"}))
    assert fields == {"Event": "Hangup", "Cause": "16"}
