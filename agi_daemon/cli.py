"""The command line: run, check-config, simulate, dialplan, crm add/list/import (README, "Command line")."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .core.ports import CrmError, CrmRejected
from .log_format import SafeFormatter
from .settings import ConfigError, SecretsNeeded, Settings, SettingsHolder, check_config, load_settings

if TYPE_CHECKING:
    from .crm.bitrix24.adapter import Bitrix24Crm
    from .crm.csv_import import ContactRow, ImportResult, NotText, RowError
    from .crm.embedded import EmbeddedCrm

log = logging.getLogger("agi_daemon")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
IMPORT_EXAMPLES = 5  # notes shown after an import without --verbose

CSV_HELP = """The CSV file starts with a header row naming its columns, in any order and any case:
  name         the contact's name (required)
  phone        the number as people write it: "+33 6 12 00 00 01", "06 12 00 00 01" (required)
  responsible  the id of an employee of the config file (optional)
Commas, semicolons or tabs separate the fields. A number already on a contact, company or
lead is skipped; a bad row is reported with its line and the rest is imported.

Example:
  name;phone;responsible
  Durand SARL;01 84 88 00 01;alice
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agi-daemon", description="Asterisk <-> CRM bridge: routes calls "
                                     "over FastAGI, follows them over AMI, keeps the CRM up to date")
    parser.add_argument("--version", action="version", version=f"agi-daemon {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("-c", "--config", required=True, type=Path, help="the YAML config file")
        return p

    run = with_config(sub.add_parser("run", help="start the daemon"))
    run.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, metavar="LEVEL",
                     help="the least important messages logged: debug, info (default), warning or error")
    checking = with_config(sub.add_parser("check-config", help="check the YAML file, print every problem"))
    checking.add_argument("--online", action="store_true",
                          help="also ask the Bitrix24 portal: its CRM mode, and which employees match no user")
    sim = with_config(sub.add_parser("simulate", help="show the decision and rule trace for one call"))
    sim.add_argument("--direction", choices=["incoming", "outgoing"], required=True, help="which way the call goes")
    sim.add_argument("--line", help="incoming: the line called (required); outgoing: the employee's line, "
                     "to check (an outgoing call goes out on the calling employee's line)")
    sim.add_argument("--caller", required=True, help="incoming: the client's number; outgoing: the employee's extension")
    sim.add_argument("--callee", help="outgoing: the number dialled (required)")
    sim.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    with_config(sub.add_parser("dialplan", help="print the fallback contexts generated from the YAML file"))

    crm = sub.add_parser("crm", help="the embedded CRM: add, list, import").add_subparsers(
        dest="crm_command", required=True, metavar="ACTION")
    add = with_config(crm.add_parser("add", help="add a contact, company or lead"))
    add.add_argument("kind", choices=["contact", "company", "lead"], help="the kind of record")
    add.add_argument("--name", required=True, help="the record's name (not empty)")
    add.add_argument("--phone", required=True, help="its number as people write it; refused if already in the CRM")
    add.add_argument("--responsible", help="the id of the employee responsible for it")
    lst = with_config(crm.add_parser("list", help="list records or calls as JSON"))
    lst.add_argument("kind", choices=["leads", "contacts", "companies", "deals", "calls", "offers"], help="what to list")
    lst.add_argument("--phone", help="only those with this number (as people write it)")
    lst.add_argument("--json", action="store_true", help="one JSON array (the only output format)")
    imp = with_config(crm.add_parser("import", help="import contacts from a CSV file (name, phone[, responsible])",
                                     description="Import contacts from a CSV file.", epilog=CSV_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter))
    imp.add_argument("kind", choices=["contacts"], help="what the file holds")
    imp.add_argument("file", type=Path, help="the CSV file")
    imp.add_argument("--encoding", help="the file's encoding when it is not UTF-8, e.g. cp1252 "
                     "(spreadsheets on Windows)")
    imp.add_argument("--verbose", action="store_true", help="list every skipped and bad row, not the first few")
    _user_parser(sub, with_config)
    _db_parser(sub, with_config)
    from . import cli_outbox

    cli_outbox.add_parser(sub, with_config)
    return parser


def _version() -> str:
    try:
        return version("agi-daemon")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    if not argv:
        parser.print_help()
        return 2
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))  # no raw control characters
    logging.basicConfig(level=args.log_level if args.command == "run" else logging.WARNING, handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines at every start say nothing to an admin
    if args.command == "check-config":
        code = _check_config(args.config)
        return _check_online(args.config) if code == 0 and args.online else code
    try:
        needs = SecretsNeeded.RUN if args.command == "run" else SecretsNeeded.NONE
        settings = load_settings(args.config, secrets=needs)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.command == "run":
        from .app import run_until_signalled

        try:
            asyncio.run(run_until_signalled(SettingsHolder(args.config)))
        except (OSError, CrmError, BaseExceptionGroup) as exc:
            reason = _startup_failure(exc)
            if reason is None:
                raise
            print(f"agi-daemon: cannot start: {reason}", file=sys.stderr)
            return 1
        return 0
    try:
        return _command(settings, args)
    except CrmError as exc:  # the CRM's database cannot be opened, or is not this version's ...
        print(f"agi-daemon: {_crm_failure(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C (an import says what it did before: see _import)
        print("agi-daemon: interrupted", file=sys.stderr)
        return 130


def _command(settings: Settings, args: argparse.Namespace) -> int:
    """The commands but run and check-config; a CrmError they raise is the caller's (one line)."""
    if args.command == "dialplan":
        from .asterisk.fallback import render_fallback

        sys.stdout.write(render_fallback(settings.rules))
        return 0
    if args.command == "db":
        return _db_upgrade(settings)
    if args.command == "user":
        try:  # before the event loop, which would take Ctrl-C at the prompt for itself
            hashed = _new_password(settings, args.employee)
        except KeyboardInterrupt:
            print("\nagi-daemon: interrupted, no password was set", file=sys.stderr)
            return 130
        return asyncio.run(_set_password(settings, args.employee, hashed))
    # crm list and outbox list only read; outbox retry and drop change a row that must exist
    needs_database = getattr(args, "crm_command", None) == "list" or args.command == "outbox"
    if needs_database and not _database_exists(settings):
        return 1
    if args.command == "simulate":
        return asyncio.run(_simulate(settings, args))
    if args.command == "outbox":
        from . import cli_outbox

        return asyncio.run(cli_outbox.run(settings, args))
    return asyncio.run(_crm(settings, args))


def _crm_failure(exc: CrmError) -> str:
    """What a command says when the CRM could not do what it asked: the database's own words
    when it cannot be opened, is locked or unreachable (CrmUnavailable), or its schema is not
    this version's; that it refused, when it refused a write (CrmRejected)."""
    return f"the CRM refused: {exc}" if isinstance(exc, CrmRejected) else str(exc)


def _startup_failure(exc: BaseException) -> str | None:
    """The one line an admin needs when the daemon cannot start (port taken, CRM unreachable),
    found inside the TaskGroup's exception group; None for anything else (a bug: traceback)."""
    if isinstance(exc, BaseExceptionGroup):
        reasons = [_startup_failure(inner) for inner in exc.exceptions]
        return "; ".join(r for r in reasons if r) if all(reasons) else None
    if isinstance(exc, (OSError, CrmError)):
        return str(exc)
    return None


def _check_config(path: Path) -> int:
    problems = check_config(path)
    for problem in problems:
        print(problem)
    errors = [problem for problem in problems if not problem.warning]
    if not errors:
        print(f"{path}: ok")
    return 1 if errors else 0


def _check_online(path: Path) -> int:
    """check-config --online: the portal's CRM mode against crm.mode, and the employees no
    portal user matches (crm.adapter bitrix24; nothing to ask otherwise)."""
    from .remote_crm import bitrix24_crm

    settings = load_settings(path)
    if settings.crm.bitrix24 is None or settings.crm.adapter.value != "bitrix24":
        print(f"{path}: no Bitrix24 portal to check (crm.adapter is {settings.crm.adapter.value})")
        return 0
    try:
        return asyncio.run(_ask_portal(bitrix24_crm(settings), settings, path))
    except CrmError as exc:
        print(f"{path}: the Bitrix24 portal cannot be checked: {exc}")
        return 1


async def _ask_portal(portal: Bitrix24Crm, settings: Settings, path: Path) -> int:
    await portal.client.open()
    try:
        mismatch = await portal.operations.mode_mismatch(settings.crm.mode)
        await portal.directory.load(portal.client)
    finally:
        await portal.client.close()
    for problem in ([mismatch] if mismatch else []):
        print(f"{path}: crm.mode: {problem}")
    for employee in portal.directory.unmatched:
        print(f"{path}: employees.{employee}: no Bitrix24 user (set crm_user, or the user's internal phone to "
              f"the extension)")
    if not mismatch and not portal.directory.unmatched:
        print(f"{path}: the Bitrix24 portal agrees (crm.mode {settings.crm.mode.value}, every employee matched)")
    return 1 if mismatch or portal.directory.unmatched else 0


def _database_exists(settings: Settings) -> bool:
    """A read-only command's check: False, after saying so, when there is no database to read."""
    missing = _missing_database(settings)
    if missing is not None:
        print(f"agi-daemon: no CRM database at {missing} (nothing was added yet: "
              "`agi-daemon run`, `crm add` or `crm import` create it)", file=sys.stderr)
    return missing is None


def _missing_database(settings: Settings) -> Path | None:
    """The embedded CRM's database file when it does not exist (a read-only command must not
    create an empty one and answer from it), else None."""
    from .crm.database import database_url, sqlite_file

    try:
        file = sqlite_file(database_url(settings.crm.embedded.database))
    except ValueError:
        return None  # the CRM says what is wrong with the URL when it opens
    return file if file is not None and not file.exists() else None


def _phone(text: str, settings: Settings) -> str:
    from .crm.new_record import RecordRefused, phone_number

    try:
        return phone_number(text, settings.rules.default_region)
    except RecordRefused as exc:
        raise SystemExit(f"agi-daemon: --phone: {exc}") from None


async def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from .core.model import Direction
    from .simulation import Refused, call_entry, decision_json, decision_text, simulate

    try:
        entry = call_entry(settings.rules, Direction(args.direction), line=args.line, caller=args.caller, callee=args.callee)
    except Refused as exc:
        print(f"agi-daemon simulate: {'error: ' if exc.usage else ''}{exc}", file=sys.stderr)
        return 2 if exc.usage else 1
    remote = _remote_lookup(settings)
    if remote is not None:  # the caller is looked up where the daemon looks: the remote CRM
        await remote.open()
        try:
            decision = await simulate(settings.rules, remote, entry)
        finally:
            await remote.close()
    else:
        if not _database_exists(settings):  # the arguments first: a usage error needs no database
            return 1
        async with open_crm(settings, write=False) as crm:
            decision = await simulate(settings.rules, crm, entry)
    print(json.dumps(decision_json(decision), indent=2) if args.json else decision_text(decision))
    return 0


def _remote_lookup(settings: Settings):
    """The remote CRM of crm.adapter (bitrix24, webhook), which routing asks who a caller is;
    None for the embedded CRM. Asked with simulate's own patience (simulation.LOOKUP_SECONDS),
    not crm_deadline_ms: simulate shows the decision with the CRM's answer, however slow (a
    first request also opens the connection, which the running daemon keeps open)."""
    import dataclasses

    from .remote_crm import RemoteCrmError, remote_crm
    from .simulation import LOOKUP_SECONDS

    patient = dataclasses.replace(settings, daemon=settings.daemon.model_copy(
        update={"crm_deadline_ms": int(LOOKUP_SECONDS * 1000)}))
    try:
        return remote_crm(patient)
    except RemoteCrmError as exc:
        raise SystemExit(f"agi-daemon: {exc}") from None


@asynccontextmanager
async def open_crm(settings: Settings, *, write: bool) -> AsyncIterator[EmbeddedCrm]:
    """The daemon's own database, for a command. One that writes brings its schema to this
    version's first, as the daemon does when it starts; one that only reads (`write=False`)
    leaves the database as it is, and refuses one whose schema is older (an older daemon may
    still be using it: migrations.SchemaOutOfDate). Its failures are CrmErrors: `main` says
    them in one line."""
    from .crm.registry import daemon_store

    crm = daemon_store(settings.crm.embedded.database)
    await crm.open(migrate=write)
    try:
        yield crm
    finally:
        await crm.close()


async def _crm(settings: Settings, args: argparse.Namespace) -> int:
    if args.crm_command == "import":
        return await _import(settings, args)
    if args.crm_command == "add":
        return await _add(settings, args)
    phone = _phone(args.phone, settings) if args.phone else None
    async with open_crm(settings, write=False) as crm:
        print(json.dumps(await crm.list_records(args.kind, phone), indent=2))
    return 0


async def _add(settings: Settings, args: argparse.Namespace) -> int:
    """`crm add`: checked as `crm import` checks a row; refused when the number is already on a
    contact, company or lead (the import skips it)."""
    from .crm.embedded import NumberKnown
    from .crm.new_record import RecordRefused, already_on, new_record

    try:
        record = new_record(args.name, args.phone, args.responsible, region=settings.rules.default_region,
                            employees=settings.rules.employees)
    except RecordRefused as exc:
        print(f"agi-daemon: {exc}", file=sys.stderr)
        return 1
    async with open_crm(settings, write=True) as crm:
        try:
            added = await crm.add_record(args.kind, record.name, record.phone, record.responsible, if_new=True)
        except NumberKnown as known:
            print(f"agi-daemon: {already_on(known.entity, record.phone)}", file=sys.stderr)
            return 1
    print(json.dumps(added, indent=2))
    return 0


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    from concurrent.futures import BrokenExecutor

    from .crm.csv_import import NotText, checked_in_a_second_process, csv_encoding, open_checked

    path: Path = args.file
    try:
        encoding = csv_encoding(args.encoding)
    except LookupError:
        raise SystemExit(f"agi-daemon: --encoding: unknown encoding {args.encoding!r}") from None
    try:
        stream, lines = open_checked(path, encoding)
    except OSError as exc:
        raise SystemExit(f"agi-daemon: {path}: {exc.strerror or exc}") from None
    except NotText as exc:
        print(f"{path}:{exc.line_number}: {_not_text(exc, encoding)}", file=sys.stderr)
        return 1
    rules = settings.rules
    imported = _Imported(lines - 1)
    with stream:
        async with open_crm(settings, write=True) as crm:
            try:
                await _import_rows(crm, checked_in_a_second_process(stream, rules.default_region,
                                                                    employees=rules.employees,
                                                                    batch_size=crm.import_batch_size), imported)
            except CrmError as exc:
                return imported.stopped(path, _crm_failure(exc))
            except BrokenExecutor:
                return imported.stopped(path, "the process checking the file's rows died (out of memory?)")
            except asyncio.CancelledError:  # Ctrl-C (asyncio.run cancels the command)
                return imported.stopped(path, "interrupted", code=130)
    result = imported.result()
    shown = result.notes if args.verbose else result.notes[:IMPORT_EXAMPLES]
    for note in shown:
        print(f"{path}:{note.line_number}: {note.message}", file=sys.stderr)
    if len(shown) < len(result.notes):
        print(f"... and {len(result.notes) - len(shown)} more (--verbose shows them all)", file=sys.stderr)
    print(f"{result.created} created, {result.skipped} skipped, {result.errors} errors")
    return 1 if result.errors else 0


def _not_text(exc: NotText, encoding: str) -> str:
    """Why a file to import is refused before anything is imported."""
    if exc.bom is not None:
        saved = " (Excel's \"Unicode text\")" if exc.bom == "utf-16" else ""
        return f"{exc.bom.upper()} text{saved}, not {_encoding_name(encoding)}: pass --encoding {exc.bom}"
    if encoding == "utf-8-sig":
        return "not UTF-8 (save as UTF-8, or pass --encoding cp1252)"
    return f"not {encoding} text (check --encoding)"


def _encoding_name(encoding: str) -> str:
    return "UTF-8" if encoding == "utf-8-sig" else encoding


@dataclass
class _Imported:
    """What an import did so far: its batches are committed one by one, so an import that
    stops part way has created what it says here."""

    total: int  # the file's lines after the header, for the progress bar
    handled: int = 0
    last_line: int = 0  # of the last row handled
    created: int = 0
    skipped: int = 0
    errors: int = 0
    notes: list[RowError] = field(default_factory=list)
    bar: bool = field(default_factory=lambda: sys.stderr is not None and sys.stderr.isatty())  # 2>&-: none

    def add(self, batch: list[ContactRow | RowError], done: ImportResult) -> None:
        self.handled += len(batch)
        self.last_line = max([self.last_line, *(row.line_number for row in batch)])
        self.created += done.created
        self.skipped += done.skipped
        self.errors += done.errors
        self.notes.extend(done.notes)
        if self.bar and self.total > 0:
            filled = int(30 * self.handled / self.total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.handled}/{self.total}")
            sys.stderr.flush()

    def result(self) -> ImportResult:
        from .crm.csv_import import ImportResult

        self._end_bar()
        notes = tuple(sorted(self.notes, key=lambda note: note.line_number))
        return ImportResult(self.created, self.skipped, self.errors, notes)

    def stopped(self, path: Path, reason: str, *, code: int = 1) -> int:
        """Say, in one line, why the import stopped and what it did before; the exit code."""
        self._end_bar()
        if not self.handled:
            print(f"agi-daemon: {path}: the import stopped ({reason}) before any row was imported", file=sys.stderr)
            return code
        print(f"agi-daemon: {path}: the import stopped ({reason}); the rows up to line {self.last_line} were handled: "
              f"{self.created} created, {self.skipped} skipped, {self.errors} errors. The contacts created stay, and "
              "importing the same file again skips them", file=sys.stderr)
        return code

    def _end_bar(self) -> None:
        if self.bar and self.handled:
            sys.stderr.write("\n")
            self.bar = False


async def _import_rows(crm: EmbeddedCrm, batches: Any, imported: _Imported) -> None:
    """Write the file's batches (as csv_import.checked_in_a_second_process gives them), one
    transaction each, counting in `imported` what each did. A batch being written when the
    import is interrupted (Ctrl-C) is waited for, and counted: its transaction goes on in the
    CRM's writer thread anyway, and the count must say what is in the database."""
    async with aclosing(batches):
        async for batch in batches:
            writing = asyncio.ensure_future(crm.import_contacts(batch, batch_size=max(len(batch), 1)))
            try:
                done = await asyncio.shield(writing)
            except asyncio.CancelledError:
                while not writing.done():  # a second Ctrl-C must not leave a committed batch uncounted
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([writing])
                if not writing.cancelled() and writing.exception() is None:
                    imported.add(batch, writing.result())
                raise
            imported.add(batch, done)


# ---- agi-daemon user set-password ---------------------------------------------------------

def _user_parser(sub: Any, with_config: Any) -> None:
    user = sub.add_parser("user", help="web call window logins").add_subparsers(dest="user_command", required=True)
    setpw = with_config(user.add_parser("set-password", help="set an employee's web password "
                                        "(read from standard input when it is not a terminal)"))
    setpw.add_argument("employee", help="the employee id of the YAML file")


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    try:
        first = getpass.getpass("New password: ")
        again = getpass.getpass("Again: ")
    except EOFError:  # Ctrl-D
        raise SystemExit("\nagi-daemon: no password given, none was set") from None
    if again != first:
        raise SystemExit("agi-daemon: the two passwords differ")
    return first


def _new_password(settings: Settings, employee: str) -> str:
    """The password read (prompted for on a terminal) and hashed."""
    from .crm.users import hash_password

    if employee not in settings.rules.employees:
        raise SystemExit(f"agi-daemon: {employee!r} is not an employee of {settings.path}")
    try:
        return hash_password(_read_password())
    except CrmError as exc:
        raise SystemExit(f"agi-daemon: {exc}") from None


async def _set_password(settings: Settings, employee: str, hashed: str) -> int:
    from .crm.users import WebUsers
    from .web.login import PASSWORD_CHECK_SECONDS

    async with open_crm(settings, write=True) as crm:
        await WebUsers(crm).set_password_hash(employee, hashed)
    print(f"password set for {employee}; their web sessions opened with the old one end within "
          f"{PASSWORD_CHECK_SECONDS:g} s")
    return 0


# ---- agi-daemon db upgrade ----------------------------------------------------------------

def _db_parser(sub: Any, with_config: Any) -> None:
    db = sub.add_parser("db", help="the embedded CRM's database: schema migrations").add_subparsers(
        dest="db_command", required=True, metavar="ACTION")
    with_config(db.add_parser("upgrade", help="bring the CRM database's schema to this version's (the daemon "
                              "also does it when it starts); says from which revision to which"))


def _db_upgrade(settings: Settings) -> int:
    from sqlalchemy import exc

    from .crm.database import database_url, sqlite_file
    from .crm.migrations import SchemaTooNew, upgrade_to_head

    try:
        url = database_url(settings.crm.embedded.database)
    except ValueError as error:
        print(f"agi-daemon: crm.embedded.database: {error}", file=sys.stderr)
        return 1
    shown = url.render_as_string(hide_password=True)
    file = sqlite_file(url)
    try:
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
        before, after = upgrade_to_head(url)
    except SchemaTooNew as error:
        print(f"agi-daemon: cannot upgrade the CRM database {shown}: {error}", file=sys.stderr)
        return 1
    except (exc.SQLAlchemyError, OSError) as error:
        reason = getattr(error, "orig", None) or error
        print(f"agi-daemon: cannot upgrade the CRM database {shown}: {reason}", file=sys.stderr)
        return 1
    if before == after:
        print(f"{shown}: already at revision {after}")
    else:
        print(f"{shown}: upgraded from revision {before or '(empty database)'} to {after}")
    return 0
