"""The dependency rule (README, "Layout"), checked on the source: core is pure and imports only core;
the edges (asterisk, crm, web, settings) never import each other or the services; only app.py
(and the command line that starts it) wires them together."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "agi_daemon"
EDGES = {"asterisk", "crm", "web", "settings"}
# What core must never touch: I/O, the event loop, the clock, the environment.
IMPURE = {"asyncio", "socket", "sqlalchemy", "os", "time", "subprocess", "logging", "yaml", "pydantic",
          "sqlite3", "psycopg", "aiohttp", "http", "urllib", "threading", "concurrent", "random", "io",
          "pathlib", "shutil", "signal", "select", "selectors"}


def imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = base + ([node.module] if node.module else [])
            found.add(".".join(module))
            # `from .. import crm` imports the module agi_daemon.crm: each name may be a module
            found |= {".".join(module + [alias.name]) for alias in node.names}
    return found


def files(subpackage: str):
    return sorted((PACKAGE / subpackage).rglob("*.py"))


TOP_LEVEL = {path.stem for path in PACKAGE.glob("*.py")}  # app, cli, simulation ...: the wiring side


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "agi_daemon" or len(parts) == 1:
        return None
    return "top" if parts[1] in TOP_LEVEL else parts[1]


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


CLOCK_AND_FILES = {"now", "utcnow", "today", "open", "getenv", "monotonic", "perf_counter"}


@pytest.mark.parametrize("path", files("core"), ids=lambda p: p.name)
def test_core_reads_no_clock_file_or_environment(path):
    """The clock is injected and nothing is read from outside: no datetime.now(), open(),
    os.getenv() ... called in core."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            assert called not in CLOCK_AND_FILES, f"{path.name}:{node.lineno} calls {called}()"
