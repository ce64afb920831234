"""asterisk.ari.app: a name Asterisk registers as one Stasis application (the refused ones
are in test_settings_broken_files)."""
from __future__ import annotations

import pytest

from agi_daemon.settings import load_settings

CONFIG = """\
daemon: {default_region: FR}
asterisk:
  ami: {secret: s}
  events: ari
  ari: {password: p, app: %s}
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
"""


@pytest.mark.parametrize("app", ["agi-daemon", "pbx_2.paris", "a" * 73])
def test_a_name_asterisk_registers_is_read(write_config, app):
    settings = load_settings(write_config(CONFIG % app))

    assert settings.asterisk.ari is not None and settings.asterisk.ari.app == app
