"""`check-config --online` against the in-test Bitrix24 portal, and `run` refusing to start
without the OAuth tokens file: the admin's two first checks of a Bitrix24 set-up."""
from __future__ import annotations

import asyncio
import os
import sys

from tests.asterisk.sandbox import closed_port
from tests.crm.bitrix24_portal import Bitrix24Portal
from tests.daemon_harness import write_config


async def agi_daemon(*args: str, cwd) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agi_daemon", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_check_config_online_reports_the_portal_mode_mismatch_and_unmatched_employees(tmp_path):
    portal = await Bitrix24Portal(crm_mode=2).start()  # the portal is in simple mode
    portal.add_user(11, "Alice Martin", inner_phone="101")
    try:
        config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "unused"), bitrix24=portal.webhook_url)
        config.write_text(config.read_text().replace(', crm_user: "12"', ""))  # bob: by extension 102, no such user
        code, out = await agi_daemon("check-config", "--online", "-c", str(config), cwd=tmp_path)
    finally:
        await portal.stop()
    assert code == 1, out
    assert "crm.mode is classic but the Bitrix24 portal" in out and "set crm.mode: simple" in out
    assert "employees.bob: no Bitrix24 user" in out and "employees.alice" not in out
    assert portal.webhook_secret not in out


async def test_check_config_online_on_a_matching_portal_says_it_agrees(tmp_path):
    portal = await Bitrix24Portal(crm_mode=1).start()
    portal.add_user(11, "Alice Martin", inner_phone="101")
    portal.add_user(12, "Bob Durand", inner_phone="102")
    try:
        config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "unused"), bitrix24=portal.webhook_url)
        code, out = await agi_daemon("check-config", "--online", "-c", str(config), cwd=tmp_path)
    finally:
        await portal.stop()
    assert code == 0, out
    assert "the Bitrix24 portal agrees" in out


async def test_run_without_the_oauth_tokens_file_refuses_to_start_and_says_which_file(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "unused"), bitrix24="https://x/rest/1/k/")
    text = config.read_text().replace('webhook_url: "https://x/rest/1/k/"',
                                      'oauth: {portal: "https://portal.example.com", client_id: app, '
                                      'client_secret: "cl13nt-s3cr3t", tokens_file: b24-tokens.json}')
    config.write_text(text)
    code, out = await agi_daemon("run", "-c", str(config), cwd=tmp_path)
    assert code == 1, out
    assert "cannot start" in out and "b24-tokens.json does not exist" in out
    assert "cl13nt-s3cr3t" not in out and "Traceback" not in out
