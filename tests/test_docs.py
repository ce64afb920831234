"""The repository stands on its own: its docs point only at files, functions and tests that
exist, and nothing sends the reader to a document outside it."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "docs" / "rules.md"
POINTER = re.compile(r"^- (Implemented in|Proved by) `([^`]+)`: (.+)$", re.M)


def shipped_files() -> list[Path]:
    found = [REPO / "README.md", REPO / "Makefile", *REPO.glob("docs/**/*.md"), *REPO.glob("config/**/*"),
             *REPO.glob("dialplan/*"), *REPO.glob("scripts/*")]
    for folder in ("agi_daemon", "bench", "tests"):
        found += REPO.glob(f"{folder}/**/*.py")
    return [path for path in found if path.is_file() and path != Path(__file__)]


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_file_sends_the_reader_outside_the_repository(path):
    text = path.read_text(encoding="utf-8", errors="replace")
    assert "DESIGN.md" not in text and "../shared" not in text


def test_rules_doc_states_every_rule_with_where_it_is_built_and_proved():
    text = RULES.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert [section.split()[0] for section in sections] == [f"R{n}" for n in range(1, 13)]
    for section in sections:
        kinds = {kind for kind, _, _ in POINTER.findall(section)}
        assert kinds == {"Implemented in", "Proved by"}, section.splitlines()[0]


@pytest.mark.parametrize("kind, file, names", POINTER.findall(RULES.read_text(encoding="utf-8") if RULES.exists() else ""))
def test_rules_doc_points_at_functions_and_tests_that_exist(kind, file, names):
    path = REPO / file
    assert path.is_file(), file
    source = path.read_text(encoding="utf-8")
    for name in re.findall(r"`([^`]+)`", names):
        if file.endswith(".conf"):
            assert f"[{name}]" in source, f"{file} has no context {name}"
        else:
            method = name.split(".")[-1]
            assert re.search(rf"^\s*(async def|def|class) {re.escape(method)}\b", source, re.M), f"{file}: {name}"
        if kind == "Proved by":
            assert name.startswith("test_"), name


def test_readme_first_screen_commands_route_a_known_client_to_its_responsible(tmp_path):
    """The commands the README's first screen gives, run as written on the development config."""
    import os
    import shlex
    import subprocess
    import sys

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first_screen = readme[: readme.index("## ")]
    commands = [line for block in re.findall(r"```sh\n(.*?)```", first_screen, re.S)
                for line in block.splitlines() if line.startswith(".venv/bin/agi-daemon ")]
    assert [shlex.split(c)[1] for c in commands] == ["crm", "simulate"]
    made = subprocess.run([sys.executable, "scripts/dev_config.py", str(tmp_path / "dev.yaml")], cwd=REPO)
    assert made.returncode == 0
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGI_DAEMON_")}
    outputs = []
    for command in commands:
        argv = [str(tmp_path / "dev.yaml") if arg == "var/dev.yaml" else arg for arg in shlex.split(command)[1:]]
        done = subprocess.run([sys.executable, "-m", "agi_daemon", *argv], cwd=REPO, env=environ,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "responsible bob" in outputs[-1] and "PJSIP/102" in outputs[-1], outputs[-1]


def test_readme_names_every_setting_a_reload_leaves_for_the_restart():
    """An admin reads in the README what a reload does not change; the list is the code's."""
    from agi_daemon.config_reload import RESTART_PARTS

    text = (REPO / "README.md").read_text(encoding="utf-8")
    paragraph = text[text.index("These need a restart:"):]
    paragraph = paragraph[:paragraph.index("\n\n")]
    for name in RESTART_PARTS:
        assert f"`{name}`" in paragraph or f"`{name.rpartition('.')[2]}`" in paragraph, name
