"""The embedded CRM at bench size: an address book as a CSV file, `agi-daemon crm import`
timed, and phone lookups timed at several sizes of the CRM."""
from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from agi_daemon.crm.embedded import EmbeddedCrm

from .procs import ROOT, STARTING_CORES


def known_phone(n: int) -> str:
    """The E.164 number of contact n of the bench's address book (n from 0)."""
    return f"+3361{(n * 7919) % 10**7:07d}"  # 7919 is prime: distinct for n below 10**7


def new_phone(n: int) -> str:
    """A number no contact has."""
    return f"+3365{n % 10**7:07d}"


def write_csv(path: Path, count: int) -> None:
    """`count` contacts, numbers written as people write them (E.164 with spaces, national)."""
    with path.open("w") as out:
        out.write("name,phone,responsible\n")
        for n in range(count):
            digits = known_phone(n)[3:]  # 61xxxxxxx: a French mobile without its 0
            if n % 2:
                out.write(f"Client {n},0{digits[0]} {digits[1:3]} {digits[3:5]} {digits[5:7]} {digits[7:]},bob\n")
            else:
                out.write(f"Client {n},+33 {digits},alice\n")


def import_contacts(config: Path, csv: Path, cwd: Path) -> float:
    """Run `agi-daemon crm import contacts CSV -c CONFIG`; returns the wall-clock seconds.
    The import runs as an admin runs it, free to use every core (the bench itself is pinned
    to the generator's core, and a child would inherit that)."""
    started = time.perf_counter()
    with subprocess.Popen([sys.executable, "-m", "agi_daemon", "crm", "import", "contacts", str(csv), "-c", str(config)],
                          cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()) as done:
        # set as Popen returns, once Python has just started: before the import starts a thread or a process
        os.sched_setaffinity(done.pid, STARTING_CORES)
        stdout, stderr = done.communicate()
    spent = time.perf_counter() - started
    if done.returncode != 0 or " created" not in stdout:
        raise RuntimeError(f"crm import failed ({done.returncode}): {stdout[-500:]} {stderr[-2000:]}")
    return spent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


async def lookup_latency(database: Path, contacts: int, count: int) -> dict[str, float]:
    """p50 and p99 (µs, wall clock) of `find_by_phone` one at a time, half known numbers and
    half unknown, on a CRM with `contacts` contacts."""
    rng = random.Random(7)
    phones = [known_phone(rng.randrange(contacts)) if n % 2 else new_phone(rng.randrange(10**7)) for n in range(count)]
    async with EmbeddedCrm(f"sqlite:///{database}") as crm:
        for phone in phones[:200]:  # warm up: connections, statement caches
            await crm.find_by_phone(phone)
        timings = []
        for n, phone in enumerate(phones):
            started = time.perf_counter()
            match = await crm.find_by_phone(phone)
            timings.append(time.perf_counter() - started)
            if (match is None) == bool(n % 2):
                raise RuntimeError(f"lookup of contact {phone[-4:]} answered {match}")
    timings.sort()
    return {"p50": timings[len(timings) // 2] * 1e6, "p99": timings[int(len(timings) * 0.99)] * 1e6}


def run_lookups(database: Path, contacts: int, count: int) -> dict[str, float]:
    return asyncio.run(lookup_latency(database, contacts, count))
