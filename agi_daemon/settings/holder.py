"""The settings the daemon runs with, and their reload (SIGHUP)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from .errors import ConfigError, Problem
from .loader import Settings, load_settings


class SettingsHolder:
    """Holds the running settings. A reload with a broken file keeps them and returns the
    problems, so a typo in the YAML never stops call routing."""

    def __init__(self, path: str | Path, environ: Mapping[str, str] | None = None) -> None:
        """Loads the file; raises ConfigError when the daemon cannot start with it."""
        self._path = Path(path)
        self._environ = environ
        self._current = load_settings(self._path, environ)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def current(self) -> Settings:
        return self._current

    def reload(self) -> list[Problem]:
        """Read the file again: take it when valid (returns []), else keep the running settings
        and return every problem found."""
        loaded = self.read()
        if isinstance(loaded, list):
            return loaded
        self.take(loaded)
        return []

    def read(self) -> Settings | list[Problem]:
        """The file's settings, or every problem found in it; the running settings stay
        until `take` (the daemon reads in a worker thread and takes on its event loop)."""
        try:
            return load_settings(self._path, self._environ)
        except ConfigError as exc:
            return exc.problems

    def take(self, settings: Settings) -> None:
        self._current = settings
