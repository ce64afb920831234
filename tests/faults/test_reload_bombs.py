"""Fault: a config file that would wedge the daemon, sent by SIGHUP (issue 12, findings 4, 5).

What must hold: the reload is refused within the reload's time limit and the running config
stays; calls are routed meanwhile; memory does not grow; a valid reload right after applies;
SIGTERM still stops the daemon.
"""
from __future__ import annotations

import os
import signal

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import UNKNOWN, write_config
from tests.fakes.fastagi import agi_call
from tests.settings.test_settings_hostile_files import alias_bomb, merge_bomb

from .daemon_process import daemon_process


async def queue_of(port: int, linkedid: str) -> str:
    answer = await agi_call(port, "incoming", extension="0184880000", callerid=UNKNOWN, args=(linkedid,))
    assert answer["AGI_DAEMON_STATUS"] == "ok"
    return answer["AGI_DAEMON_QUEUE"]


async def test_reload_bombs_are_refused_while_calls_route_and_a_valid_reload_and_sigterm_still_work(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"))
    valid = config.read_text()
    os.mkfifo(tmp_path / "ami.fifo")
    secret = 'secret: "x"'
    bombs = {
        "alias bomb": alias_bomb(),
        "merge-key bomb": merge_bomb(),
        "nested lists": valid + "deep: " + "[" * 5000 + "]" * 5000 + "\n",
        "secret_file FIFO": valid.replace(secret, "secret_file: ami.fifo"),
        "secret_file /dev/zero": valid.replace(secret, "secret_file: /dev/zero"),
        "huge file": valid + ("#" * 1000 + "\n") * 2000,
    }
    async with daemon_process(config) as daemon:
        assert await queue_of(daemon.port, "before") == "Local/101@employees&Local/102@employees"
        memory_before = daemon.rss_mb()
        for name, text in bombs.items():
            config.write_text(text)
            seen = len(daemon.lines)
            daemon.process.send_signal(signal.SIGHUP)
            await daemon.said(r"reload refused, the running config stays", after=seen, timeout=7)
            assert await queue_of(daemon.port, name) == "Local/101@employees&Local/102@employees", name
        assert daemon.rss_mb() - memory_before < 50

        config.write_text(valid.replace("members: [alice, bob]", "members: [bob, alice]"))
        seen = len(daemon.lines)
        daemon.process.send_signal(signal.SIGHUP)
        await daemon.said(r"config reloaded", after=seen)
        assert await queue_of(daemon.port, "after") == "Local/102@employees&Local/101@employees"

        assert await daemon.stopped() == 0
        assert "Traceback" not in daemon.log
