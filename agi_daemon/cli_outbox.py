"""`agi-daemon outbox list|retry ID|drop ID`: the CRM writes waiting for delivery, and the dead
letters. None of them creates a database; `list` only reads (it neither creates nor migrates
one); `retry` puts a dead letter back in line (a running daemon picks it up within seconds);
`drop` gives a command up for good."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .crm import outbox_store
from .settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Connection


def add_parser(sub: Any, with_config: Any) -> None:
    outbox = sub.add_parser("outbox", help="CRM writes waiting for delivery, and dead letters").add_subparsers(
        dest="outbox_command", required=True, metavar="ACTION")
    listing = with_config(outbox.add_parser("list", help="the pending commands and dead letters, oldest first"))
    listing.add_argument("--json", action="store_true", help="one JSON array")
    retry = with_config(outbox.add_parser("retry", help="deliver a dead letter again (attempts counted from zero)"))
    retry.add_argument("id", type=int, help="the command's id (outbox list)")
    drop = with_config(outbox.add_parser("drop", help="give a pending command or a dead letter up for good"))
    drop.add_argument("id", type=int, help="the command's id (outbox list)")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """The command; the database exists (`cli.main` checks it first: none is created here), and
    a CrmError (it cannot be opened, its schema is not this version's ...) is `cli.main`'s."""
    from .cli import open_crm

    async with open_crm(settings, write=args.outbox_command != "list") as store:
        if args.outbox_command == "list":
            rows, waiting = await store.transaction("list the outbox", _listing, write=False)
            print(json.dumps(rows, indent=2) if args.json else _table(rows))
            if waiting > len(rows):
                _more(waiting - len(rows), len(rows), json_output=args.json)
            return 0
        if args.outbox_command == "retry":
            back = await store.transaction("retry a command", lambda conn: outbox_store.retry(conn, args.id, datetime.now(UTC)),
                                           write=True)
            if back is None:
                print(f"agi-daemon: no pending command or dead letter {args.id}", file=sys.stderr)
                return 1
            print(f"command {args.id} is pending again")
            return 0
        dropped = await store.transaction(
            "drop a command", lambda conn: outbox_store.drop(conn, args.id, datetime.now(UTC)), write=True)
        if not dropped:
            print(f"agi-daemon: no pending command or dead letter {args.id}", file=sys.stderr)
            return 1
        print(f"command {args.id} dropped")
        return 0


def _listing(conn: Connection) -> tuple[list[dict[str, Any]], int]:
    """The rows listed (the oldest, as many as outbox_store.listing gives), and how many wait in all."""
    depth = outbox_store.depth(conn)
    return outbox_store.listing(conn), depth.pending + depth.dead


def _more(left_out: int, shown: int, *, json_output: bool) -> None:
    """The rows a listing leaves out: after the table; with --json on stderr, the array on
    stdout staying the one JSON value the README promises."""
    if json_output:
        print(f"agi-daemon: outbox list: {left_out:,} more not in the JSON array (it holds the oldest {shown:,})",
              file=sys.stderr)
    else:
        print(f"... and {left_out:,} more, not listed (the oldest {shown:,} are)")


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "nothing pending, no dead letters"
    lines = [f"{'ID':>6}  {'STATUS':8} {'KIND':18} {'ATTEMPTS':>8}  {'CALL':24} LAST ERROR"]
    for row in rows:
        lines.append(f"{row['id']:>6}  {row['status']:8} {row['kind']:18} {row['attempts']:>8}  "
                     f"{row['linkedid'][:24]:24} {(row['last_error'] or '')[:80]}")
    return "\n".join(lines)
