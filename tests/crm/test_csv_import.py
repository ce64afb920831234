"""`crm import contacts FILE.csv`: reading the address book and creating its contacts."""
from __future__ import annotations

import asyncio
import io
import multiprocessing

import pytest

from agi_daemon.crm.csv_import import (
    ContactRow, ImportResult, RowError, checked_in_a_second_process, import_contacts, parse_contacts_csv,
)
from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.crm.embedded import EmbeddedCrm

pytestmark = pytest.mark.databases("sqlite", "postgresql")


def parse(text: str) -> list[ContactRow | RowError]:
    return list(parse_contacts_csv(io.StringIO(text), "FR", employees={"alice", "bob"}))


def test_rows_with_any_column_order_and_case_give_e164_contacts() -> None:
    rows = parse(
        "Phone,NAME,Responsible\n01 84 88 00 01,Jean Durand,alice\n+33 6 12 00 00 02,Marie,\n"
    )

    assert rows == [
        ContactRow(2, "Jean Durand", "+33184880001", "alice"),
        ContactRow(3, "Marie", "+33612000002", None),
    ]


def test_semicolon_file_with_byte_order_mark_and_no_responsible_column_is_read() -> None:
    rows = parse("\ufeffname;phone\n\"Durand; Jean\";0033612000003\n")

    assert rows == [ContactRow(2, "Durand; Jean", "+33612000003", None)]


def test_bad_rows_give_their_line_number_and_the_rest_is_read() -> None:
    rows = parse(
        "name,phone\n"
        "Jean,0612000001\n"
        "Bad phone,12\n"
        "\n"
        ",0612000002\n"
        "No phone\n"
        "Too,many,fields\n"
        "Marie,0612000003,,\n"
    )

    assert rows[0] == ContactRow(2, "Jean", "+33612000001")
    errors = [row for row in rows if isinstance(row, RowError)]
    assert [error.line_number for error in errors] == [3, 5, 6, 7]
    assert "'12'" in errors[0].message
    assert errors[1].message == "the name is empty"
    assert errors[2].message == "the phone is empty"
    assert errors[3].message == "3 fields where the header has 2"
    assert str(errors[1]) == "line 5: the name is empty"
    assert rows[-1] == ContactRow(8, "Marie", "+33612000003")


def test_quoted_field_over_two_lines_keeps_the_next_line_numbers_right() -> None:
    rows = parse('name,phone\n"Jean\nDurand",0612000001\nMarie,12\n')

    assert rows == [
        ContactRow(2, "Jean\nDurand", "+33612000001"),
        RowError(4, "'12' is not a possible phone number in region FR"),
    ]


def test_a_quoted_field_over_two_lines_at_the_end_of_the_file_is_a_row() -> None:
    assert parse('name,phone\nMarie,0612000002\n"Jean\nDurand",0612000001') == [
        ContactRow(2, "Marie", "+33612000002"), ContactRow(3, "Jean\nDurand", "+33612000001")]


@pytest.mark.parametrize(("rest", "opened", "last"), [
    ('"Marie,0612000002\nLuc,0612000003\n\n', 3, 5),
    ('"Marie,0612000002\nLuc,0612000003', 3, 4),
    ('"Marie;x",0612000002\n"Luc,0612000003\n', 4, 4),
])
def test_a_quote_never_closed_is_named_on_its_line_instead_of_a_row_without_phone(rest: str, opened: int,
                                                                                   last: int) -> None:
    rows = parse("name,phone\nJean,0612000001\n" + rest)

    assert rows[0] == ContactRow(2, "Jean", "+33612000001")
    assert rows[-1] == RowError(opened, "a quote opened on this line is never closed: the rest of the file "
                                        f"(to line {last}) was read as one field and is not imported")
    assert len(rows) == opened - 1


def test_a_quote_never_closed_before_a_large_rest_of_file_is_named_among_the_two_causes() -> None:
    """Past 128 KiB the csv module stops such a field itself, still inside it: it cannot tell a
    quote never closed from a field that long, and the error names both."""
    rest = "".join(f"Client {n},06 12 {n % 100:02d} {n // 100 % 100:02d} 00\n" for n in range(20_000))
    rows = parse('name,phone\nJean,0612000001\n"Marie,0612000002\n' + rest)

    assert rows[0] == ContactRow(2, "Jean", "+33612000001")
    [error] = rows[1:]
    assert isinstance(error, RowError) and error.line_number == 3
    assert error.message == ("unreadable CSV (field larger than field limit (131072)): a quote opened on this line "
                             "and never closed, or a field longer than 128 KiB; the rest of the file is ignored")


def test_header_without_phone_column_is_one_error_on_line_1() -> None:
    assert parse("name,telephone\nJean,0612000001\n") == [
        RowError(1, "the header has no 'phone' column")
    ]


def test_empty_file_is_one_error_on_line_1() -> None:
    assert parse("") == [RowError(1, "the header has no 'name' and no 'phone' column")]


async def test_import_creates_contacts_skips_known_numbers_and_counts_bad_rows(
    crm: EmbeddedCrm,
) -> None:
    await crm.add_record("contact", "Already here", "+33612000001", "bob")
    rows = parse_contacts_csv(
        io.StringIO(
            "name,phone,responsible\n"
            "Jean,06 12 00 00 01,alice\n"  # already on contact:1
            "Marie,06 12 00 00 02,alice\n"
            "Bad,12,\n"
            "Paul,06 12 00 00 03,\n"
            "Marie again,+33612000002,\n"  # created by an earlier batch
        ),
        "FR", employees={"alice", "bob"},
    )
    seen: list[int] = []

    result = await crm.import_contacts(rows, batch_size=2, progress=seen.append)

    assert (result.created, result.skipped, result.errors) == (2, 2, 1)
    assert [(note.line_number, note.message) for note in result.notes] == [
        (2, "skipped: phone …0001 is already on contact:1"),
        (4, "'12' is not a possible phone number in region FR"),
        (6, "skipped: phone …0002 is already on contact:2"),
    ]
    assert seen == [2, 4, 5]
    contacts = await crm.list_records("contacts")
    assert [(c["name"], c["phones"], c["responsible"]) for c in contacts] == [
        ("Already here", ["+33612000001"], "bob"),
        ("Marie", ["+33612000002"], "alice"),
        ("Paul", ["+33612000003"], None),
    ]
    match = await crm.find_by_phone("+33612000003")
    assert match is not None and match.name == "Paul"


async def test_number_twice_in_one_batch_is_created_once(crm: EmbeddedCrm) -> None:
    rows = parse("name,phone\nMarie,0612000002\nMarie bis,+33 6 12 00 00 02\n")

    result = await crm.import_contacts(rows)

    assert result == ImportResult(
        1, 1, 0, (RowError(3, "skipped: phone …0002 is already on the contact of line 2"),)
    )
    assert [c["name"] for c in await crm.list_records("contacts")] == ["Marie"]


async def test_import_of_only_bad_rows_creates_nothing(crm: EmbeddedCrm) -> None:
    result = await crm.import_contacts([RowError(2, "the name is empty")])

    assert result == ImportResult(0, 0, 1, (RowError(2, "the name is empty"),))
    assert await crm.list_records("contacts") == []


CHECKED_ELSEWHERE = (
    "name;phone;responsible\n"
    "Jean;06 12 00 00 01;alice\n"
    "Bad;12;\n"
    "\n"
    "Marie;+33 6 12 00 00 02;carol\n"  # carol is no employee
    '"Paul\nDurand";06 12 00 00 03;\n'  # a quoted name over two lines
    "Anne;06 12 00 00 04;bob;extra\n"
    "Luc;06 12 00 00 05;\n"
    '"unterminated;06 12 00 00 06;\n'  # a quote never closed: the rest of the file is its name
)


async def checked_elsewhere(text: str, batch_size: int) -> list[list[ContactRow | RowError]]:
    return [batch async for batch in checked_in_a_second_process(io.StringIO(text), "FR", employees={"alice", "bob"},
                                                                  batch_size=batch_size)]


@pytest.mark.parametrize("batch_size", [1, 2, 100])
async def test_rows_checked_in_a_second_process_are_those_read_here_in_order(batch_size: int) -> None:
    batches = await checked_elsewhere(CHECKED_ELSEWHERE, batch_size)

    assert [row for batch in batches for row in batch] == parse(CHECKED_ELSEWHERE)
    assert all(0 < len(batch) <= batch_size for batch in batches)


async def test_a_header_without_phone_checked_in_a_second_process_is_one_error_on_line_1() -> None:
    assert await checked_elsewhere("name,telephone\nJean,0612000001\n", 10) == [
        [RowError(1, "the header has no 'phone' column")]]


async def test_an_import_fed_by_the_second_process_creates_each_batch_in_order() -> None:
    written: list[list[int]] = []

    async def insert(batch: list[ContactRow]) -> tuple[list[ContactRow], list[RowError]]:
        written.append([row.line_number for row in batch])
        return batch, []

    rows = checked_in_a_second_process(io.StringIO(CHECKED_ELSEWHERE), "FR", employees={"alice", "bob"}, batch_size=2)
    result = await import_contacts(insert, rows)

    # line 3's number, line 5's responsible, line 8's extra field and line 10 (no phone) are refused
    assert written == [[2], [6], [9]]
    assert (result.created, result.errors) == (3, 4)


async def test_an_import_whose_write_fails_raises_its_error_and_stops_its_second_process() -> None:
    async def insert(batch: list[ContactRow]) -> tuple[list[ContactRow], list[RowError]]:
        raise CrmUnavailable("the database is locked")

    rows = checked_in_a_second_process(io.StringIO(CHECKED_ELSEWHERE), "FR", employees={"alice"}, batch_size=2)
    with pytest.raises(CrmUnavailable, match="locked"):
        await import_contacts(insert, rows)

    async with asyncio.timeout(10):  # the row checker stops (it may finish the batch it holds)
        while [child for child in multiprocessing.active_children() if child.name.startswith("SpawnProcess")]:
            await asyncio.sleep(0.05)
