"""The dependency rule (README, "Layout"), checked on the source: core is pure and imports only core;
the edges (asterisk, crm, web, settings) never import each other or the services; only app.py
(and the command line that starts it) wires them together."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "agi_daemon"
EDGES = {"asterisk", "crm", "web", "settings"}
# What core must never touch: I/O, the event loop, the clock, the environment.
IMPURE = {"asyncio", "socket", "sqlalchemy", "os", "time", "subprocess", "logging", "yaml", "pydantic"}


def imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            found.add(".".join(base + ([node.module] if node.module else [])))
    return found


def files(subpackage: str):
    return sorted((PACKAGE / subpackage).rglob("*.py"))


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "agi_daemon" and len(parts) > 1 else None


@pytest.mark.parametrize("path", files("core"), ids=lambda p: p.name)
def test_core_imports_only_core_and_no_io(path):
    for module in imports(path):
        assert layer(module) in (None, "core"), f"{path.name} imports {module}"
        assert module.split(".")[0] not in IMPURE, f"{path.name} imports {module}"


# A route handler "reads the request, calls a service, turns the decision into AGI commands".
CALLS_SERVICES = {PACKAGE / "asterisk" / "routes"}


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_edges_import_only_core_and_themselves(edge):
    for path in files(edge):
        allowed = {None, "core", edge} | ({"services"} if path.parent in CALLS_SERVICES else set())
        for module in imports(path):
            assert layer(module) in allowed, f"{edge}/{path.relative_to(PACKAGE)} imports {module}"


def test_services_do_not_import_the_edges():
    for path in files("services"):
        for module in imports(path):
            assert layer(module) not in EDGES, f"services/{path.name} imports {module}"
