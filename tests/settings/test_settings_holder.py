"""SettingsHolder.reload (SIGHUP): a broken file keeps the running settings."""
from __future__ import annotations

import pytest

from agi_daemon.settings import ConfigError, SettingsHolder

from .settings_helpers import MINIMAL, MINIMAL_ENV


def test_reload_of_invalid_file_keeps_running_settings_and_returns_problems(write_config):
    path = write_config(MINIMAL)
    holder = SettingsHolder(path, MINIMAL_ENV)
    running = holder.current
    path.write_text(MINIMAL.replace("members: [alice, bob]", "members: [alice, bobb]"))

    problems = holder.reload()

    assert [str(problem) for problem in problems] == [f"{path}:8: queue_groups.sales.members.1: unknown employee: bobb"]
    assert holder.current is running


def test_reload_of_valid_file_takes_the_new_settings(write_config):
    path = write_config(MINIMAL)
    holder = SettingsHolder(path, MINIMAL_ENV)
    path.write_text(MINIMAL.replace("members: [alice, bob]", "members: [bob, alice]"))

    assert holder.reload() == []
    assert holder.current.rules.queue_groups["sales"].members == ("bob", "alice")


def test_reload_after_a_failed_reload_takes_the_fixed_file(write_config):
    path = write_config(MINIMAL)
    holder = SettingsHolder(path, MINIMAL_ENV)
    path.write_text("daemon: [")
    assert holder.reload() != []
    path.write_text(MINIMAL.replace("Paris sales line", "Paris line"))

    assert holder.reload() == []
    assert holder.current.rules.lines["+33184880000"].name == "Paris line"


def test_holder_with_invalid_file_at_start_raises_config_error(write_config):
    path = write_config("daemon: {default_region: FR}\n")

    with pytest.raises(ConfigError):
        SettingsHolder(path, MINIMAL_ENV)
