"""SIGHUP's reload: bounded in time, and saying how each change really takes effect (issue 12,
findings 4 and 7)."""
from __future__ import annotations

import asyncio
import re
import signal
import threading

from agi_daemon import config_reload
from agi_daemon.app import Daemon
from agi_daemon.settings import SettingsHolder
from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import UNKNOWN, write_config
from tests.fakes.fastagi import agi_call
from tests.faults.daemon_process import daemon_process


class StuckHolder(SettingsHolder):
    """The settings of a file whose reading never ends (what a wedged loader looked like)."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.release = threading.Event()

    def read(self):
        self.release.wait(30)
        return super().read()


async def test_reload_stuck_reading_is_refused_after_the_time_limit_and_sigterm_still_stops(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(config_reload, "RELOAD_SECONDS", 0.5)
    holder = StuckHolder(write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x")))
    running = holder.current
    daemon, stop, ready = Daemon(holder), asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(daemon.serve(stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        daemon.reload()
        async with asyncio.timeout(5):
            while not any("reload refused" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.05)
        [refused] = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
        assert refused == "reload refused, the running config stays: reading the config file took more than 0.5 s"
        answer = await agi_call(daemon.agi_port, "incoming", extension="0184880000", callerid=UNKNOWN, args=("x",))
        assert answer["AGI_DAEMON_STATUS"] == "ok"
    finally:
        stop.set()
        await asyncio.wait_for(serving, 15)  # the stuck reading thread does not hold the stop
        holder.release.set()
    assert holder.current is running


async def test_reload_changing_a_template_says_it_applies_to_the_next_call_and_it_does(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"))
    async with daemon_process(config) as daemon:
        config.write_text(config.read_text().replace("Local/{extension}@employees", "Local/{extension}@staff"))
        seen = len(daemon.lines)
        daemon.process.send_signal(signal.SIGHUP)
        said = await daemon.said(r"asterisk\.endpoint_template.*", after=seen)
        answer = await agi_call(daemon.port, "incoming", extension="0184880000", callerid=UNKNOWN, args=("x",))
        await daemon.stopped()

    assert said[0] == ("asterisk.endpoint_template changed: calls routed from now on dial with it; the dialplan's "
                       "fallback contexts keep the old one until you run `agi-daemon dialplan` again and reload "
                       "Asterisk's dialplan")
    assert answer["AGI_DAEMON_QUEUE"] == "Local/101@staff&Local/102@staff"
    assert not re.search(r"changes to .*asterisk.* take effect at the next restart", daemon.log)


async def test_allowed_peers_of_every_address_is_warned_in_the_daemons_log(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"))
    config.write_text(config.read_text().replace('allowed_peers: ["127.0.0.1"]', 'allowed_peers: ["0.0.0.0/0"]'))
    async with daemon_process(config) as daemon:
        said = await daemon.said(r"WARNING agi_daemon.app: config: .*")
        await daemon.stopped()

    assert said[0].endswith("daemon.fastagi.allowed_peers.0: warning: 0.0.0.0/0 allows every address: FastAGI is open "
                            "to every host that can reach it (anyone may ask where calls go and fill its sessions): "
                            "list the Asterisk servers' addresses")


async def test_reload_adding_an_employee_on_bitrix24_finds_their_portal_user_for_the_next_lead(tmp_path, portal, caplog):
    """Bitrix24 knows employees by their portal users, read at the start: an employee added by
    a reload is found too, and the lead of a new caller routed to them is theirs on the portal."""
    portal.add_user(14, "Dave", "104")
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"), bitrix24=portal.webhook_url)
    holder = SettingsHolder(config)
    daemon, stop, ready = Daemon(holder), asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(daemon.serve(stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        config.write_text(config.read_text()
                          .replace("employees:\n", 'employees:\n  dave: {name: Dave Petit, extension: "104"}\n', 1)
                          .replace("members: [alice, bob]", "members: [dave, alice, bob]"))
        daemon.reload()
        async with asyncio.timeout(10):
            while "dave" not in holder.current.rules.employees:
                await asyncio.sleep(0.05)
        answer = await agi_call(daemon.agi_port, "incoming", extension="0184880000", callerid=UNKNOWN, args=("R1",))
        async with asyncio.timeout(10):
            while not portal.records_with_origin("lead", "R1/records"):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 15)
    [lead] = portal.records_with_origin("lead", "R1/records")
    assert answer["AGI_DAEMON_QUEUE"].startswith("Local/104@employees")
    assert str(lead["ASSIGNED_BY_ID"]) == "14"


def test_a_new_default_region_is_said_to_apply_at_once_and_the_rest_of_daemon_at_the_restart(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"))
    before = SettingsHolder(config).current
    config.write_text(config.read_text().replace("default_region: FR", "default_region: BE")
                      .replace("crm_deadline_ms: 300", "crm_deadline_ms: 250"))
    after = SettingsHolder(config).current

    assert config_reload.what_changed(before, after) == [
        "daemon.default_region changed to BE: the file's numbers were read again with it, and callers' numbers "
        "are read with it from the next call; the dialplan's fallback contexts keep the old one until you run "
        "`agi-daemon dialplan` again and reload Asterisk's dialplan",
        "changes to daemon.crm_deadline_ms take effect at the next restart; until then the daemon runs with the "
        "values it started with (the warnings above are the file's)"]


def test_a_change_waiting_for_the_restart_is_said_again_at_each_reload_until_undone(tmp_path):
    """Started with crm_deadline_ms 300: a first reload sets 250 (waits for the restart); a
    second one only adds an employee (the 250 still waits: said again); a third sets 300 back
    (nothing waits any more: said nothing, though the reload before said 250)."""
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"))
    started = SettingsHolder(config).current
    config.write_text(config.read_text().replace("crm_deadline_ms: 300", "crm_deadline_ms: 250"))
    first = SettingsHolder(config).current
    config.write_text(config.read_text().replace("employees:\n", "employees:\n  erin: {name: Erin Roy}\n", 1))
    second = SettingsHolder(config).current
    config.write_text(config.read_text().replace("crm_deadline_ms: 250", "crm_deadline_ms: 300"))
    third = SettingsHolder(config).current
    assert "erin" in second.rules.employees

    waiting = [line for line in config_reload.what_changed(started, first, started) if "restart" in line]
    assert waiting and "daemon.crm_deadline_ms" in waiting[0]
    assert config_reload.what_changed(first, second, started) == waiting
    assert config_reload.what_changed(second, third, started) == []



async def test_a_reload_asked_while_the_daemon_starts_is_done_once_it_runs(tmp_path, caplog):
    """`systemctl reload` right after a start (a slow portal can hold the start for seconds):
    the SIGHUP comes before the daemon runs. It used to be dropped ("reload ignored") though
    systemctl said it succeeded; it is now done once the daemon runs."""
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"))
    holder = SettingsHolder(config)
    daemon, stop, ready = Daemon(holder), asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(daemon.serve(stop, ready))
    try:
        await asyncio.sleep(0)  # serve() runs up to opening the CRM (its migrations, in a thread)
        assert not ready.is_set()
        config.write_text(config.read_text().replace("employees:\n", "employees:\n  erin: {name: Erin Roy}\n", 1))
        daemon.reload()
        await asyncio.wait_for(ready.wait(), 10)
        async with asyncio.timeout(5):
            while "erin" not in holder.current.rules.employees:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 15)
    assert not any("reload ignored" in r.getMessage() for r in caplog.records)
