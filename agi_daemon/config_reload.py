"""SIGHUP's reload, bounded: the file is read in a thread of its own with a time limit, and
what changed is said as it really happens.

A thread cannot be killed, so the loader is bounded too (file size, alias expansion,
nesting); the time limit is the second fence. A reload that is refused or late keeps the
running config, and the late thread is a daemon thread: it never holds the stop.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Callable, TypeVar

from .settings import Settings

RELOAD_SECONDS = 5.0
"""The longest a reload may take to read and check the file."""

T = TypeVar("T")


class ReloadTooSlow(Exception):
    """The file was not read and checked within the time limit."""


async def in_thread(work: Callable[[], T], timeout: float | None = None) -> T:
    """`work()` run in a new daemon thread; ReloadTooSlow after `timeout` seconds (the
    thread's late result is dropped). Unlike asyncio.to_thread, a stuck thread neither holds
    the default executor nor the interpreter's exit. `timeout` defaults to RELOAD_SECONDS."""
    timeout = RELOAD_SECONDS if timeout is None else timeout
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]  # result is a T when error is None

    def run() -> None:
        try:
            result, error = work(), None
        except BaseException as exc:  # handed to the waiting coroutine
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:  # the loop is closed: the daemon stopped meanwhile
            pass

    threading.Thread(target=run, name="config-reload", daemon=True).start()
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.shield(done)
    except TimeoutError:
        done.add_done_callback(lambda late: late.cancelled() or late.exception())  # a late failure is no one's
        raise ReloadTooSlow(f"reading the config file took more than {timeout:g} s") from None


RESTART_PARTS = ("daemon.fastagi", "daemon.web", "daemon.crm_deadline_ms", "daemon.pbx_id", "asterisk.ami", "asterisk.ari", "asterisk.events", "crm.adapter", "crm.embedded",
                 "crm.outbox", "crm.bitrix24", "crm.webhook")  # the remote adapters are built at the start
TEMPLATES = "endpoint_template", "trunk_template"


def what_changed(before: Settings, after: Settings, started: Settings | None = None) -> list[str]:
    """Log lines saying how each change of a reload takes effect. The rules (employees,
    queue groups, lines, CRM rules) and the dialing templates apply to the next call; the
    connections and the CRM store at the next restart: those are compared with the settings
    the daemon `started` with (default `before`), so that a change an earlier reload left
    waiting is said again, and one undone since is not."""
    def part(settings: Settings, name: str) -> object:
        section, _, key = name.partition(".")
        value = getattr(settings, section)
        value = getattr(value, key) if key else value
        if name == "crm.bitrix24" and value is not None:  # its pipelines go with the rules (Bitrix24Crm)
            return value.model_dump(exclude={"pipelines"})
        return value

    running = started or before
    restart = [name for name in RESTART_PARTS if part(running, name) != part(after, name)]
    lines = []
    templates = [f"asterisk.{name}" for name in TEMPLATES
                 if getattr(before.asterisk, name) != getattr(after.asterisk, name)]
    if templates:
        lines.append(f"{' and '.join(templates)} changed: calls routed from now on dial with it; the dialplan's "
                     "fallback contexts keep the old one until you run `agi-daemon dialplan` again and reload "
                     "Asterisk's dialplan")
    if before.daemon.default_region != after.daemon.default_region:
        lines.append(f"daemon.default_region changed to {after.daemon.default_region}: the file's numbers were read "
                     "again with it, and callers' numbers are read with it from the next call; the dialplan's "
                     "fallback contexts keep the old one until you run `agi-daemon dialplan` again and reload "
                     "Asterisk's dialplan")
    if restart:
        lines.append(f"changes to {', '.join(restart)} take effect at the next restart; until then the daemon "
                     "runs with the values it started with (the warnings above are the file's)")
    return lines
