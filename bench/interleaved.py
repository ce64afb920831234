"""Compare two versions of the daemon on the new- and known-caller paths, interleaved: the way
each performance change was measured (docs/performance.md, "How a change is measured").

    python -m bench.interleaved --base /tmp/before --rounds 4
    (git worktree add /tmp/before HEAD~1, or `git archive REV agi_daemon | tar -x -C /tmp/before`)

Each round starts one daemon from `--base` (its `agi_daemon` package first on PYTHONPATH) and
one from this tree, one after the other, each on a copy of the same CRM (1,000,000 contacts
by default, imported once and cached like `make bench --reuse-db`), warms it with known
callers, then measures `--sessions` known and new callers at 50 concurrent: µs of the
daemon's CPU per session, and the part on the event loop. Minutes apart, a machine's load
moves a figure by a tenth; round after round, both versions meet the same machine.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile
from pathlib import Path

from . import crm_data, routing
from .__main__ import bench_config, build_crm
from .procs import GENERATOR_CORE, pin, start_daemon

WARM_UP = 5_000
_NEW = itertools.count()  # new callers' numbers never repeat between daemons


def measure(database: Path, contacts: int, sessions: int, source: Path | None, warm_up: int = WARM_UP) -> dict[str, float]:
    """One daemon (from `source`, or this tree) on a copy of `database`."""
    with tempfile.TemporaryDirectory(prefix="agi-daemon-interleaved-") as tmp:
        work = Path(tmp)
        shutil.copy(database, work / "crm.sqlite3")
        saved = os.environ.get("PYTHONPATH")
        if source is not None:
            os.environ["PYTHONPATH"] = str(source)
        try:
            server = start_daemon(bench_config(work), work)
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        known = lambda i: crm_data.known_phone(i % contacts)  # noqa: E731
        try:
            routing.run_load(server.port, routing.incoming(server.port, known, offset=contacts // 2), total=warm_up,
                             concurrency=50, cpus={GENERATOR_CORE})
            figures: dict[str, float] = {}
            first_new = next(_NEW) * 10 * sessions
            for kind, phone in (("known", known), ("new", lambda i: routing.NEW(first_new + i))):
                split: dict[str, float] = {}
                figures[kind], _ = routing.cpu_per_session(server, routing.incoming(server.port, phone), sessions,
                                                           split=split)
                figures[f"{kind}_loop"] = split["event_loop_us"]
            return figures
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.interleaved")
    parser.add_argument("--base", type=Path, required=True, help="a tree (or archive) holding the other agi_daemon")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=3_000)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--warm-up", type=int, default=WARM_UP, help="known callers before each measure")
    args = parser.parse_args(argv)
    if not (args.base / "agi_daemon" / "__init__.py").exists():
        parser.error(f"{args.base} holds no agi_daemon package")
    pin(os.getpid(), GENERATOR_CORE)
    with tempfile.TemporaryDirectory(prefix="agi-daemon-interleaved-crm-") as tmp:
        # a large CRM is imported once and cached (as `make bench --reuse-db`); a small one each time
        database, _, _ = build_crm(Path(tmp), args.contacts, reuse=args.contacts >= 100_000)
        print(f"{'round':>5} {'version':<8} {'known':>6} {'(loop)':>6} {'new':>6} {'(loop)':>6}   µs of CPU per session")
        for number in range(1, args.rounds + 1):
            for name, source in (("base", args.base.resolve()), ("this", None)):
                f = measure(database, args.contacts, args.sessions, source, args.warm_up)
                print(f"{number:>5} {name:<8} {f['known']:6.0f} {f['known_loop']:6.0f} {f['new']:6.0f} {f['new_loop']:6.0f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
