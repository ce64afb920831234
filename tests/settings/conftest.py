"""Fixtures for the settings tests."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text to agi-daemon.yaml in a fresh folder and return its path."""

    def write(text: str, name: str = "agi-daemon.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
