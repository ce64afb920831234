"""`agi-daemon outbox list|retry ID|drop ID`: the CRM writes waiting for delivery, and the dead
letters. `list` only reads (it never creates a database); `retry` puts a dead letter back in
line (a running daemon picks it up within seconds); `drop` gives a command up for good."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from .core.ports import CrmError
from .crm import outbox_store
from .crm.registry import daemon_store
from .settings import Settings


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
    try:
        async with daemon_store(settings.crm.embedded.database) as store:
            if args.outbox_command == "list":
                rows = await store.transaction("list the outbox", outbox_store.listing, write=False)
                print(json.dumps(rows, indent=2) if args.json else _table(rows))
                return 0
            if args.outbox_command == "retry":
                back = await store.transaction("retry a command", lambda conn: outbox_store.retry(conn, args.id),
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
    except CrmError as exc:
        print(f"agi-daemon: {exc}", file=sys.stderr)
        return 1


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "nothing pending, no dead letters"
    lines = [f"{'ID':>6}  {'STATUS':8} {'KIND':18} {'ATTEMPTS':>8}  {'CALL':24} LAST ERROR"]
    for row in rows:
        lines.append(f"{row['id']:>6}  {row['status']:8} {row['kind']:18} {row['attempts']:>8}  "
                     f"{row['linkedid'][:24]:24} {(row['last_error'] or '')[:80]}")
    return "\n".join(lines)
