"""A pytest plugin that writes, after each test, how many connections Asterisk holds in
CLOSE-WAIT (closed by the client, never read again by Asterisk), to find the test after which
Asterisk 22's HTTP server starts leaking them in long runs (README, "Tests"):

    PYTHONPATH=scripts .venv/bin/python -m pytest -p pytest_asterisk_close_wait
    sort -n var/asterisk-close-wait.txt | tail    # or read it in order: the first jump

Needs `ss` (iproute2)."""
from __future__ import annotations

import subprocess
from pathlib import Path

OUTPUT = Path("var/asterisk-close-wait.txt")


def pytest_runtest_teardown(item, nextitem) -> None:  # noqa: ARG001 (pytest's hook signature)
    listing = subprocess.run(["ss", "-tnp", "state", "close-wait"], capture_output=True, text=True, check=False).stdout
    count = sum(1 for line in listing.splitlines() if '"asterisk"' in line)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with OUTPUT.open("a") as out:
        out.write(f"{count:4d} {item.nodeid}\n")
