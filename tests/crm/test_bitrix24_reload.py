"""A reload on Bitrix24, with the whole daemon in-process (no Asterisk: FastAGI is asked
directly) and the in-test portal: what the reload changes reaches the portal at once."""
from __future__ import annotations

import asyncio

from agi_daemon.app import Daemon
from agi_daemon.settings import SettingsHolder
from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import UNKNOWN, write_config
from tests.fakes.fastagi import agi_call


async def test_reload_to_a_new_pipeline_puts_the_next_deal_in_its_category(tmp_path, portal):
    """crm.simple.pipeline switched to sales2 and `sales2: 7` added to crm.bitrix24.pipelines
    in one reload: the next new caller's deal is in category 7, not in 0 until a restart."""
    portal.crm_mode = 2  # simple
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"), bitrix24=portal.webhook_url, mode="simple")
    holder = SettingsHolder(config)
    daemon, stop, ready = Daemon(holder), asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(daemon.serve(stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        text = config.read_text()
        assert "pipeline: general," in text and "pipelines: {general: 0, b2b: 3}" in text
        config.write_text(text.replace("pipeline: general,", "pipeline: sales2,")
                          .replace("pipelines: {general: 0, b2b: 3}", "pipelines: {general: 0, b2b: 3, sales2: 7}"))
        daemon.reload()
        async with asyncio.timeout(10):
            while holder.current.rules.crm.pipeline != "sales2":
                await asyncio.sleep(0.05)
        await agi_call(daemon.agi_port, "incoming", extension="0184880000", callerid=UNKNOWN, args=("P1",))
        async with asyncio.timeout(10):
            while not portal.records_with_origin("deal", "P1/records"):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 15)
    [deal] = portal.records_with_origin("deal", "P1/records")
    assert str(deal["CATEGORY_ID"]) == "7"
