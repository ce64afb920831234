"""Importing an address book of contacts from a CSV file (`agi-daemon crm import contacts`).

The file has a header row naming its columns: `name` and `phone`, and optionally
`responsible` (an employee id), in any order and any case. Commas, semicolons or tabs
separate the fields (whichever the header uses). Phone numbers are written as people write
them and normalised to E.164 with the daemon's default region. Each row is checked as
`crm add` checks a record (`new_record.py`).

The file is UTF-8 (a byte order mark is fine) unless told otherwise: spreadsheets often save
cp1252. `open_checked` reads it through once before anything is imported, so a file in another
encoding is refused with the line where it stops being text, and nothing is half-imported (a
pipe, which can be read only once, is kept in a temporary file meanwhile).
"""
from __future__ import annotations

import asyncio
import codecs
import csv
import io
import itertools
import multiprocessing
import signal
import tempfile
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Collection, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO, cast


from .new_record import RecordRefused, new_record

REQUIRED_COLUMNS = ("name", "phone")
OPTIONAL_COLUMNS = ("responsible",)
BATCH_SIZE = 5000  # rows per transaction of `crm import`


@dataclass(frozen=True)
class ContactRow:
    """One contact to create: line of the file, name, E.164 number, responsible or None."""

    line_number: int
    name: str
    phone: str
    responsible: str | None = None


@dataclass(frozen=True)
class RowError:
    """A row that was not imported, and why ("line 7: phone '12' is not a phone number")."""

    line_number: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.message}"


@dataclass(frozen=True)
class ImportResult:
    """What an import did: contacts created, rows skipped because the number is already on a
    contact, bad rows; `notes` explains every skipped and bad row, in file order."""

    created: int
    skipped: int
    errors: int
    notes: tuple[RowError, ...] = ()


class NotText(ValueError):
    """The file is not text in the expected encoding from `line_number` on. `bom`: the
    encoding its byte order mark names ("utf-16": Excel's "Unicode text"), when it has one
    of another encoding than the one expected."""

    def __init__(self, line_number: int, encoding: str, bom: str | None = None) -> None:
        self.line_number = line_number
        self.encoding = encoding
        self.bom = bom
        super().__init__(f"line {line_number}: not {encoding} text" + (f" ({bom} byte order mark)" if bom else ""))


# Byte order marks of the encodings a spreadsheet may save that are not ASCII-compatible
# (UTF-32's first, since UTF-32LE's begins with UTF-16LE's).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def csv_encoding(name: str | None) -> str:
    """The codec to read the file with: UTF-8 by default, and a UTF-8 byte order mark is
    skipped. LookupError for an encoding Python does not know."""
    codec = codecs.lookup(name or "utf-8").name
    return "utf-8-sig" if codec in ("utf-8", "utf-8-sig") else codec


def check_text(path: Path, encoding: str) -> int:
    """Read the file through once: its number of lines, or NotText at the first line that is
    not text in `encoding`. Raises OSError when it cannot be read."""
    with path.open("rb") as stream:
        return _checked(stream, encoding)


def open_checked(path: Path, encoding: str) -> tuple[TextIO, int]:
    """The file opened as text in `encoding` for the import, once read through as `check_text`
    reads it, and its number of lines. A pipe (`<(iconv ...)`, /dev/stdin) can be read only
    once: what is read of it is kept in a temporary file (on disk: an address book may be
    large), which the import then reads; a regular file is read again. Raises NotText, or
    OSError when the file cannot be read."""
    raw: IO[bytes] = path.open("rb")
    try:
        if raw.seekable():
            count = _checked(raw, encoding)
            raw.seek(0)
        else:
            pipe, raw = raw, tempfile.TemporaryFile()
            with pipe:
                count = _checked(pipe, encoding, keep=raw.write)
            raw.seek(0)
        return io.TextIOWrapper(raw, encoding=encoding, newline=""), count
    except BaseException:
        raw.close()
        raise


def _checked(stream: IO[bytes], encoding: str, keep: Callable[[bytes], object] | None = None) -> int:
    """`check_text` on an open binary stream, each line also given to `keep`."""
    decoder = codecs.getincrementaldecoder(encoding)()
    count = 0
    for count, raw in enumerate(stream, 1):
        if count == 1:
            bom = next((name for mark, name in _BOMS if raw.startswith(mark)), None)
            if bom is not None and not codecs.lookup(encoding).name.startswith(bom):
                raise NotText(1, encoding, bom)
        try:
            decoder.decode(raw)
        except UnicodeDecodeError:
            raise NotText(count, encoding) from None
        if keep is not None:
            keep(raw)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise NotText(max(count, 1), encoding) from None
    return count


def parse_contacts_csv(text_stream: Iterable[str], region: str, *,
                       employees: Collection[str]) -> Iterator[ContactRow | RowError]:
    """Read the file row by row. A bad row yields a RowError naming the problem and the
    reading goes on; a header without the `name` or `phone` column yields one RowError for
    line 1 and nothing else."""
    columns: Columns | None = None
    for item in _read(text_stream):
        if isinstance(item, Columns):
            columns = item
        elif isinstance(item, RowError):
            yield item
        else:
            assert columns is not None  # the header comes first
            yield _contact_row(*item, columns, region, employees)


async def checked_in_a_second_process(
    text_stream: Iterable[str], region: str, *, employees: Collection[str], batch_size: int = BATCH_SIZE,
) -> AsyncGenerator[list[ContactRow | RowError], None]:
    """`parse_contacts_csv`'s rows, in batches, each batch's names and numbers checked in a
    second process: checking a number (phonenumbers) costs more than writing it, and the
    import's writing (SQLite, in the CRM's writer thread) then runs beside it instead of
    waiting for it in turn. The file is read here; a batch is checked while the one before
    is written. Close the generator (`aclosing`, or read it to the end): the second process
    stops then. A second process that dies raises concurrent.futures.BrokenExecutor."""
    loop = asyncio.get_running_loop()
    items = _read(text_stream)
    header = next(items)
    if isinstance(header, RowError):  # line 1, and nothing after it
        yield [header]
        return
    assert isinstance(header, Columns)  # _read gives the header first
    rows = cast(Iterator[tuple[int, list[str]] | RowError], items)  # after the header, rows only
    people = frozenset(employees)
    # spawned: the parent has threads (no fork); deaf to Ctrl-C, which the import's own process handles
    checker = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_interrupts)
    ahead: deque[asyncio.Future[list[ContactRow | RowError]]] = deque()
    try:
        while True:
            raw = list(itertools.islice(rows, batch_size))
            if raw:
                ahead.append(loop.run_in_executor(checker, check_rows, raw, header, region, people))
            if not ahead:
                return
            if not raw or len(ahead) > 1:
                yield await ahead.popleft()
    finally:  # stopped early (an error, the end): the batches queued are dropped, the process stops
        for waiting in ahead:
            waiting.cancel()
        checker.shutdown(wait=False, cancel_futures=True)


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def check_rows(rows: list[tuple[int, list[str]] | RowError], columns: Columns, region: str,
               employees: Collection[str]) -> list[ContactRow | RowError]:
    """The rows read from the file (line, cells), checked (in the second process)."""
    return [row if isinstance(row, RowError) else _contact_row(*row, columns, region, employees) for row in rows]


@dataclass(frozen=True)
class Columns:
    """The header: how many columns, and where name, phone and responsible are."""

    width: int
    position: dict[str, int]


def _read(text_stream: Iterable[str]) -> Iterator[Columns | tuple[int, list[str]] | RowError]:
    """The file as read, unchecked: first the header's Columns (or one RowError for line 1,
    and nothing after it), then each row that is not blank as (line, cells), and a RowError
    where the file stops being readable CSV.

    The reader is lenient (a stray quote inside a field is kept as written), so a quote
    opened and never closed would make the rest of the file one field, refused later as a
    row without a phone. Each row is therefore given out once the next one is read: the last
    one, when its lines end inside a quoted field, is that quote."""
    kept = _RowLines(text_stream)
    first = next(kept.lines, "")
    delimiter = max(",;\t", key=first.count) if first.strip() else ","
    reader = csv.reader(itertools.chain([first], kept.lines), delimiter=delimiter)
    header = next(reader, [])
    names = [cell.strip().lstrip("\ufeff").lower() for cell in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        yield RowError(1, f"the header has no {' and no '.join(repr(m) for m in missing)} column")
        return
    known = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    yield Columns(len(names), {name: names.index(name) for name in known if name in names})
    line_number = reader.line_num + 1
    held: tuple[int, list[str]] | None = None  # the last row read, not blank
    try:
        for cells in kept.rows(reader):
            if held is not None:
                yield held
            held = (line_number, cells) if any(cell.strip() for cell in cells) else None
            line_number = reader.line_num + 1
    except csv.Error as error:
        if held is not None:
            yield held
        yield RowError(line_number, f"unreadable CSV ({error}){_MAYBE_UNCLOSED if 'field limit' in str(error) else ''}; "
                                    "the rest of the file is ignored")
        return
    if held is not None and _unclosed(kept.of_last_row, delimiter):
        yield RowError(held[0], f"a quote opened on this line is never closed: the rest of the file (to line "
                                f"{reader.line_num}) was read as one field and is not imported")
    elif held is not None:
        yield held


# Past the csv module's field limit the reader cannot tell which: it is still inside the field.
_MAYBE_UNCLOSED = ": a quote opened on this line and never closed, or a field longer than 128 KiB"


class _RowLines:
    """The file's lines, keeping those the csv reader read its last row from."""

    def __init__(self, text_stream: Iterable[str]) -> None:
        self._reading: list[str] = []
        self.of_last_row: list[str] = []
        self.lines = self._kept(text_stream)  # what the csv reader reads


    def _kept(self, text_stream: Iterable[str]) -> Iterator[str]:
        reading = self._reading
        for line in text_stream:
            reading.append(line)
            yield line

    def rows(self, reader: Iterator[list[str]]) -> Iterator[list[str]]:
        """The reader's rows, `of_last_row` holding the lines of the one just given."""
        reading = self._reading
        reading.clear()
        for cells in reader:
            self.of_last_row[:] = reading
            reading.clear()
            yield cells


def _unclosed(raw: list[str], delimiter: str) -> bool:
    """Whether these lines end inside a quoted field: then one more quote closes that field
    and they stay one row; otherwise it opens a row of its own."""
    return len(list(csv.reader([*raw, '"'], delimiter=delimiter))) == 1


def _contact_row(line_number: int, cells: list[str], columns: Columns, region: str,
                 employees: Collection[str]) -> ContactRow | RowError:
    width, position = columns.width, columns.position
    if any(cell.strip() for cell in cells[width:]):
        return RowError(line_number, f"{len(cells)} fields where the header has {width}")
    cells = cells + [""] * (width - len(cells))  # spreadsheets drop trailing empty fields
    responsible = cells[position["responsible"]] if "responsible" in position else None
    try:
        record = new_record(cells[position["name"]], cells[position["phone"]], responsible,
                            region=region, employees=employees)
    except RecordRefused as refused:
        return RowError(line_number, str(refused))
    return ContactRow(line_number, record.name, record.phone, record.responsible)


BatchResult = tuple[list[ContactRow], list[RowError]]


async def import_contacts(
    insert: Callable[[list[ContactRow]], Awaitable[BatchResult]],
    rows: Iterable[ContactRow | RowError] | AsyncIterable[list[ContactRow | RowError]],
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Create the contacts of `rows` (or of batches of rows, as `checked_in_a_second_process`
    gives them, `batch_size` then unused) in batches, each given to `insert` (which creates
    them in one transaction). A row whose number is already on a contact (in the CRM, or
    earlier in the file) is skipped; RowErrors are counted. `progress` is told how many rows
    were handled so far after each batch."""
    created = skipped = errors = handled = 0
    notes: list[RowError] = []
    async with aclosing(_batches(rows, batch_size)) as batches:
        async for batch in batches:
            contact_rows = [row for row in batch if isinstance(row, ContactRow)]
            for row in batch:
                if isinstance(row, RowError):
                    errors += 1
                    notes.append(row)
            new_rows, duplicates = (await insert(contact_rows)) if contact_rows else ([], [])
            created += len(new_rows)
            skipped += len(duplicates)
            notes.extend(duplicates)
            handled += len(batch)
            if progress is not None:
                progress(handled)
    notes.sort(key=lambda note: note.line_number)
    return ImportResult(created, skipped, errors, tuple(notes))


async def _batches(rows: Iterable[ContactRow | RowError] | AsyncIterable[list[ContactRow | RowError]],
                   size: int) -> AsyncGenerator[list[ContactRow | RowError], None]:
    if isinstance(rows, AsyncIterable):
        batches = aiter(rows)
        try:
            async for batch in batches:
                yield batch
        finally:  # an import that stops early stops the reading too
            if isinstance(batches, AsyncGenerator):
                await batches.aclose()
        return
    remaining = iter(rows)
    while batch := list(itertools.islice(remaining, size)):
        yield batch
