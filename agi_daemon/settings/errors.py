"""What is wrong in the admin's YAML file, each problem pointing at a file line and a key."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

KeyPath = tuple[str | int, ...]
"""Where a value sits in the file: mapping keys as written, list items by index."""


def dotted(path: Sequence[str | int]) -> str:
    """("queue_groups", "sales", "members", 0) -> "queue_groups.sales.members.0"."""
    return ".".join(str(part) for part in path)


@dataclass(frozen=True)
class Problem:
    """One mistake in the config file, shown as `FILE:LINE: key.path: message`. A warning
    (`FILE:LINE: key.path: warning: message`) does not stop the daemon: check-config shows it
    and still says ok."""

    file: str
    line: int
    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        return f"{self.file}:{self.line}: {self.path}: {kind}{self.message}"


class ConfigError(Exception):
    """The config file cannot be used; `problems` lists every mistake found, by line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass
class ProblemLog:
    """Collects problems for one file, looking up the line of each key path."""

    file: str
    line_of: Callable[[KeyPath], int]
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: KeyPath, message: str, *, warning: bool = False) -> None:
        self.problems.append(Problem(self.file, self.line_of(path), dotted(path), message, warning))

    def add_at(self, line: int, label: str, message: str) -> None:
        """A problem that is not about one key, such as a YAML syntax error: `(yaml)`."""
        self.problems.append(Problem(self.file, line, label, message))

    def errors(self) -> list[Problem]:
        """The problems that stop the daemon (not the warnings)."""
        return [problem for problem in self.problems if not problem.warning]

    def sorted(self) -> list[Problem]:
        """Every distinct problem, by line; problems on the same line keep their order."""
        return sorted(dict.fromkeys(self.problems), key=lambda problem: problem.line)
