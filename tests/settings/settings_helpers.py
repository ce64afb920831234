"""Shared by the settings tests: the example file, a minimal valid file, problem lines."""
from __future__ import annotations

from pathlib import Path

import pytest

from agi_daemon.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "agi-daemon.yaml"
EXAMPLE_ENV = {"AGI_DAEMON_AMI_SECRET": "ami-s3cret", "AGI_DAEMON_ARI_PASSWORD": "ari-pa55word"}

# The smallest valid file: every test of a mistake starts from something like it.
MINIMAL = """\
daemon: {default_region: FR}
asterisk:
  ami: {secret: "${AMI_SECRET}"}
employees:
  alice: {name: Alice Martin, extension: "101"}
  bob: {name: Bob Durand, extension: "102"}
queue_groups:
  sales: {members: [alice, bob]}
numbers:
  "+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}
"""
MINIMAL_ENV = {"AMI_SECRET": "ami-s3cret"}


def problem_lines(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Every problem of the file as the exact line check-config prints."""
    with pytest.raises(ConfigError) as caught:
        load_settings(path, MINIMAL_ENV if environ is None else environ)
    return [str(problem) for problem in caught.value.problems]
