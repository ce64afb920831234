"""The command line of DESIGN.md §4: run, check-config, simulate, dialplan, crm add/list/import."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from .core.phone import InvalidPhone, to_e164
from .core.ports import CrmError
from .settings import ConfigError, Settings, SettingsHolder, check_config, load_settings

log = logging.getLogger("agi_daemon")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agi-daemon", description="Asterisk <-> CRM bridge")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("-c", "--config", required=True, type=Path, help="the YAML file")
        return p

    run = with_config(sub.add_parser("run", help="start the daemon"))
    run.add_argument("--log-level", default="INFO")
    with_config(sub.add_parser("check-config", help="check the YAML file, print every problem"))
    sim = with_config(sub.add_parser("simulate", help="show the decision and rule trace for one call"))
    sim.add_argument("--direction", choices=["incoming", "outgoing"], required=True)
    sim.add_argument("--line", help="incoming: the line called (required); outgoing: the employee's line, "
                     "to check (an outgoing call goes out on the calling employee's line)")
    sim.add_argument("--caller", required=True, help="incoming: the client's number; outgoing: the employee's extension")
    sim.add_argument("--callee", help="outgoing: the number dialled (required)")
    sim.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    with_config(sub.add_parser("dialplan", help="print the fallback contexts generated from the YAML file"))

    crm = sub.add_parser("crm", help="the embedded CRM").add_subparsers(dest="crm_command", required=True)
    add = with_config(crm.add_parser("add", help="add a contact, company or lead"))
    add.add_argument("kind", choices=["contact", "company", "lead"])
    add.add_argument("--name", required=True)
    add.add_argument("--phone", required=True)
    add.add_argument("--responsible", help="employee id")
    lst = with_config(crm.add_parser("list", help="list records or calls as JSON"))
    lst.add_argument("kind", choices=["leads", "contacts", "companies", "deals", "calls", "offers"])
    lst.add_argument("--phone")
    lst.add_argument("--json", action="store_true", help="one JSON array (the only output format)")
    imp = with_config(crm.add_parser("import", help="import contacts from a CSV file (name, phone[, responsible])"))
    imp.add_argument("kind", choices=["contacts"])
    imp.add_argument("file", type=Path)
    _user_parser(sub, with_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING").upper() if args.command == "run" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "check-config":
        return _check_config(args.config)
    try:
        settings = load_settings(args.config)
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
    if args.command == "simulate":
        return asyncio.run(_simulate(settings, args))
    if args.command == "user":
        return asyncio.run(_set_password(settings, args.employee))
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
    if not problems:
        print(f"{path}: ok")
    return 1 if problems else 0


def _phone(text: str, settings: Settings) -> str:
    try:
        return to_e164(text, settings.rules.default_region)
    except InvalidPhone as exc:
        raise SystemExit(f"agi-daemon: --phone: {exc}") from None


async def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from .core.model import Direction
    from .simulation import Refused, call_entry, decision_json, decision_text, simulate

    try:
        entry = call_entry(settings.rules, Direction(args.direction), line=args.line, caller=args.caller, callee=args.callee)
    except Refused as exc:
        print(f"agi-daemon simulate: {'error: ' if exc.usage else ''}{exc}", file=sys.stderr)
        return 2 if exc.usage else 1
    async with _open_crm(settings) as crm:
        decision = await simulate(settings.rules, crm, entry)
    print(json.dumps(decision_json(decision), indent=2) if args.json else decision_text(decision))
    return 0


def _open_crm(settings: Settings):
    from .app import build_crm

    return build_crm(settings)


async def _crm(settings: Settings, args: argparse.Namespace) -> int:
    from .crm.csv_import import parse_contacts_csv

    async with _open_crm(settings) as crm:
        try:
            if args.crm_command == "add":
                if args.responsible and args.responsible not in settings.rules.employees:
                    raise SystemExit(f"agi-daemon: --responsible: {args.responsible!r} is not an employee of {args.config}")
                record = await crm.add_record(args.kind, args.name, _phone(args.phone, settings), args.responsible)
                print(json.dumps(record, indent=2))
            elif args.crm_command == "list":
                phone = _phone(args.phone, settings) if args.phone else None
                print(json.dumps(await crm.list_records(args.kind, phone), indent=2))
            else:
                return await _import(crm, settings, args.file, parse_contacts_csv)
        except CrmError as exc:
            print(f"agi-daemon: the CRM refused: {exc}", file=sys.stderr)
            return 1
    return 0


async def _import(crm: Any, settings: Settings, path: Path, parse) -> int:
    try:
        stream = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SystemExit(f"agi-daemon: {path}: {exc.strerror}") from None
    total = sum(1 for _ in path.open(encoding="utf-8-sig")) - 1
    show = sys.stderr.isatty()

    def progress(done: int) -> None:
        if show and total > 0:
            filled = int(30 * done / total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
            sys.stderr.flush()

    with stream:
        result = await crm.import_contacts(parse(stream, settings.rules.default_region), progress=progress)
    if show:
        sys.stderr.write("\n")
    for note in result.notes:
        print(f"{path}:{note.line_number}: {note.message}", file=sys.stderr)
    print(f"{result.created} created, {result.skipped} skipped, {result.errors} errors")
    return 1 if result.errors else 0


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

    if employee not in settings.rules.employees:
        raise SystemExit(f"agi-daemon: {employee!r} is not an employee of {settings.path}")
    try:
        hashed = hash_password(_read_password())
    except CrmError as exc:
        raise SystemExit(f"agi-daemon: {exc}") from None
    async with _open_crm(settings) as crm:
        await WebUsers(crm).set_password_hash(employee, hashed)
    print(f"password set for {employee}")
    return 0
