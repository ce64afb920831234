"""The admin pages: the simulator answers as `agi-daemon simulate` does, the lines as the
daemon understood them (no secret shown), the calls-per-hour chart."""
from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from agi_daemon.core.model import CallRecord, Direction, Disposition
from tests.daemon_harness import ALICE_MOBILE, BLOCKED, CLIENT, LYON, PARIS, UNKNOWN, running_daemon
from tests.web.harness import base_url, chromium, http_login, logged_in, new_session, screenshot, set_passwords, web_config

CASES = [  # (direction, line, caller, callee)
    ("incoming", "01 84 88 00 00", UNKNOWN, None),  # new caller: a lead (R3 create)
    ("incoming", "+33 4 72 00 00 00", UNKNOWN, None),  # offer line (R3 offer)
    ("incoming", "0184880000", CLIENT, None),  # known client: the responsible first (R6)
    ("incoming", "0184880000", BLOCKED, None),  # exception list (R7)
    ("incoming", "0184880000", ALICE_MOBILE, None),  # an employee's number (R8)
    ("incoming", "+33 1 99 99 99 99", UNKNOWN, None),  # a line the file does not list
    ("outgoing", "", "101", UNKNOWN),  # alice calls out
    ("outgoing", "", "102", CLIENT),  # bob calls a known client
]


async def cli_simulate(config, direction, line, caller, callee, *, as_json: bool) -> str:
    args = [sys.executable, "-m", "agi_daemon", "simulate", "-c", str(config), "--direction", direction,
            "--line", line, "--caller", caller] + (["--callee", callee] if callee else []) + (["--json"] if as_json else [])
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    if process.returncode == 1:  # arguments the command line refuses: its message on stderr
        return json.dumps({"status": "refused", "error": err.decode().strip().removeprefix("agi-daemon simulate: ")})
    assert process.returncode == 0, err.decode()
    return out.decode()


def _query(direction, line, caller, callee) -> str:
    return urlencode({"direction": direction, "line": line, "caller": caller, **({"callee": callee} if callee else {})})


async def test_admin_simulator_answers_as_the_command_line_for_a_table_of_cases(tmp_path, crm):
    await crm.add_record("contact", "Client SA", CLIENT, "bob")
    config = web_config(tmp_path)
    async with running_daemon(None, config, crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with new_session() as carol:
            await http_login(carol, daemon, "carol")
            for case in CASES:
                async with carol.get(f"{base_url(daemon)}/api/admin/simulate?{_query(*case)}") as response:
                    page_answer = await response.json()
                    assert response.status == (422 if page_answer["status"] == "refused" else 200), case
                assert page_answer == json.loads(await cli_simulate(config, *case, as_json=True)), case
            statuses = set()
            for case in CASES:
                async with carol.get(f"{base_url(daemon)}/api/admin/simulate?{_query(*case)}") as response:
                    statuses.add((await response.json())["status"])
    assert statuses == {"ok", "excluded", "refused"}  # the table covers each kind of answer


@pytest.mark.browser
async def test_admin_page_shows_the_simulation_text_the_lines_and_the_calls_per_hour_chart(tmp_path, crm):
    now = datetime.now(UTC)
    for index, disposition in enumerate([Disposition.ANSWERED] * 3 + [Disposition.MISSED] * 2):
        start = now.replace(minute=0, second=0, microsecond=index)  # all in this hour
        await crm.log_call(CallRecord(f"chart-{index}", Direction.INCOMING, PARIS, UNKNOWN, disposition, start,
                                      start + timedelta(seconds=20), employees=("alice",)))
    earlier = now - timedelta(hours=3)
    await crm.log_call(CallRecord("chart-earlier", Direction.INCOMING, LYON, UNKNOWN, Disposition.BUSY, earlier,
                                  earlier + timedelta(seconds=5)))
    config = web_config(tmp_path)
    case = CASES[0]
    async with running_daemon(None, config, crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with chromium() as browser:
            page = await logged_in(browser, daemon, "carol")
            await page.goto(f"{base_url(daemon)}/admin")
            lines = await page.inner_text("table.lines")
            assert "Paris sales line" in lines and "SUPPORT_CALL" in lines and "offer" in lines
            assert "unused" not in await page.content()  # the AMI secret of the test config
            await page.select_option("select[name=direction]", case[0])
            await page.fill("input[name=line]", case[1])
            await page.fill("input[name=caller]", case[2])
            await page.click("#simulator button[type=submit]")
            shown = await page.inner_text("#simulation", timeout=5000)
            assert shown.strip() == (await cli_simulate(config, *case, as_json=False)).strip()
            hour = f"{now:%H}"
            answered = await page.get_attribute(f'rect[data-hour="{hour}"][data-kind="answered"]', "data-count")
            missed = await page.get_attribute(f'rect[data-hour="{hour}"][data-kind="missed"]', "data-count")
            busy = await page.get_attribute(f'rect[data-hour="{earlier:%H}"][data-kind="missed"]', "data-count")
            await page.goto(f"{base_url(daemon)}/admin")
            await screenshot(page, "admin")
    assert (answered, missed, busy) == ("3", "2", "1")


async def test_admin_pages_are_refused_to_agents(tmp_path, crm):
    async with running_daemon(None, web_config(tmp_path), crm, wait_for_ami=False) as daemon:
        await set_passwords(crm)
        async with new_session() as alice:
            await http_login(alice, daemon, "alice")
            async with alice.get(f"{base_url(daemon)}/admin", allow_redirects=False) as response:
                assert response.status == 403
            async with alice.get(f"{base_url(daemon)}/api/admin/simulate?{_query(*CASES[0])}") as response:
                assert response.status == 403
