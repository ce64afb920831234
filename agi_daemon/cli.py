"""The command line: run, check-config, simulate, dialplan, crm add/list/import (README, "Command line")."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .core.ports import CrmError
from .log_format import SafeFormatter
from .settings import ConfigError, SecretsNeeded, Settings, SettingsHolder, check_config, load_settings

if TYPE_CHECKING:
    from .crm.bitrix24.adapter import Bitrix24Crm

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
    read_only = getattr(args, "crm_command", None) == "list" or getattr(args, "outbox_command", None) == "list"
    if read_only and not _database_exists(settings):
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
    if args.command == "simulate":
        return asyncio.run(_simulate(settings, args))
    if args.command == "user":
        return asyncio.run(_set_password(settings, args.employee))
    if args.command == "db":
        return _db_upgrade(settings)
    if args.command == "outbox":
        from . import cli_outbox

        return asyncio.run(cli_outbox.run(settings, args))
    if args.command == "dialplan":
        from .asterisk.fallback import render_fallback

        sys.stdout.write(render_fallback(settings.rules))
        return 0
    return asyncio.run(_crm(settings, args))


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
        async with _open_crm(settings) as crm:
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


def _open_crm(settings: Settings):
    from .crm.registry import daemon_store

    return daemon_store(settings.crm.embedded.database)


async def _crm(settings: Settings, args: argparse.Namespace) -> int:
    if args.crm_command == "import":
        return await _import(settings, args)
    if args.crm_command == "add":
        return await _add(settings, args)
    phone = _phone(args.phone, settings) if args.phone else None
    async with _open_crm(settings) as crm:
        try:
            print(json.dumps(await crm.list_records(args.kind, phone), indent=2))
        except CrmError as exc:
            print(f"agi-daemon: the CRM refused: {exc}", file=sys.stderr)
            return 1
    return 0


async def _add(settings: Settings, args: argparse.Namespace) -> int:
    """`crm add`: checked as `crm import` checks a row; refused when the number is already on a
    contact, company or lead (the import skips it)."""
    from .crm.new_record import CLIENT_TYPES, RecordRefused, already_on, new_record

    try:
        record = new_record(args.name, args.phone, args.responsible, region=settings.rules.default_region,
                            employees=settings.rules.employees)
    except RecordRefused as exc:
        print(f"agi-daemon: {exc}", file=sys.stderr)
        return 1
    listed_as = {"contact": "contacts", "company": "companies", "lead": "leads"}
    async with _open_crm(settings) as crm:
        try:
            for client_type in CLIENT_TYPES:
                found = await crm.list_records(listed_as[client_type.value], record.phone)
                if found:
                    entity = f"{client_type.value}:{found[0]['id']}"
                    print(f"agi-daemon: {already_on(entity, record.phone)}", file=sys.stderr)
                    return 1
            added = await crm.add_record(args.kind, record.name, record.phone, record.responsible)
        except CrmError as exc:
            print(f"agi-daemon: the CRM refused: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(added, indent=2))
    return 0


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    from concurrent.futures import BrokenExecutor

    from .crm.csv_import import NotText, check_text, checked_in_a_second_process, csv_encoding

    path: Path = args.file
    try:
        encoding = csv_encoding(args.encoding)
    except LookupError:
        raise SystemExit(f"agi-daemon: --encoding: unknown encoding {args.encoding!r}") from None
    try:
        total = check_text(path, encoding) - 1
        stream = path.open(newline="", encoding=encoding)
    except OSError as exc:
        raise SystemExit(f"agi-daemon: {path}: {exc.strerror}") from None
    except NotText as exc:
        hint = ("not UTF-8 (save as UTF-8, or pass --encoding cp1252)" if encoding == "utf-8-sig"
                else f"not {encoding} text (check --encoding)")
        print(f"{path}:{exc.line_number}: {hint}", file=sys.stderr)
        return 1
    rules = settings.rules
    async with _open_crm(settings) as crm:
        try:
            with stream:
                result = await _import_rows(crm, checked_in_a_second_process(stream, rules.default_region,
                                                                             employees=rules.employees),
                                            total)
        except CrmError as exc:
            print(f"agi-daemon: the CRM refused: {exc}", file=sys.stderr)
            return 1
        except BrokenExecutor:
            print("agi-daemon: the process checking the file's rows died (out of memory?), the import stopped; "
                  "the contacts created so far stay, and importing the file again skips them", file=sys.stderr)
            return 1
    shown = result.notes if args.verbose else result.notes[:IMPORT_EXAMPLES]
    for note in shown:
        print(f"{path}:{note.line_number}: {note.message}", file=sys.stderr)
    if len(shown) < len(result.notes):
        print(f"... and {len(result.notes) - len(shown)} more (--verbose shows them all)", file=sys.stderr)
    print(f"{result.created} created, {result.skipped} skipped, {result.errors} errors")
    return 1 if result.errors else 0


async def _import_rows(crm: Any, rows: Any, total: int) -> Any:
    """The import, with a progress bar when stderr is a terminal."""
    show = sys.stderr.isatty()

    def progress(done: int) -> None:
        if show and total > 0:
            filled = int(30 * done / total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
            sys.stderr.flush()

    result = await crm.import_contacts(rows, progress=progress)
    if show:
        sys.stderr.write("\n")
    return result


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

    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise SystemExit("agi-daemon: the two passwords differ")
    return first


async def _set_password(settings: Settings, employee: str) -> int:
    from .crm.users import WebUsers, hash_password
    from .web.login import PASSWORD_CHECK_SECONDS

    if employee not in settings.rules.employees:
        raise SystemExit(f"agi-daemon: {employee!r} is not an employee of {settings.path}")
    try:
        hashed = hash_password(_read_password())
    except CrmError as exc:
        raise SystemExit(f"agi-daemon: {exc}") from None
    async with _open_crm(settings) as crm:
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
    from .crm.migrations import upgrade_to_head

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
    except (exc.SQLAlchemyError, OSError) as error:
        reason = getattr(error, "orig", None) or error
        print(f"agi-daemon: cannot upgrade the CRM database {shown}: {reason}", file=sys.stderr)
        return 1
    if before == after:
        print(f"{shown}: already at revision {after}")
    else:
        print(f"{shown}: upgraded from revision {before or '(empty database)'} to {after}")
    return 0
