"""The YAML reader keeps the line of every key and what the admin wrote."""
from __future__ import annotations

from agi_daemon.settings import load_settings
from agi_daemon.settings.errors import ProblemLog
from agi_daemon.settings.yaml_lines import KeyLines, load_yaml

from .settings_helpers import MINIMAL_ENV, problem_lines


def read(text: str) -> tuple[object, KeyLines, list[str]]:
    lines = KeyLines()
    log = ProblemLog("f.yaml", lines.line_of)
    data = load_yaml(text, lines, log)
    return data, lines, [str(problem) for problem in log.problems]


def test_key_lines_give_each_key_and_list_item_its_line():
    data, lines, problems = read("a:\n  b: 1\n  c:\n    - x\n    - y\n")

    assert data == {"a": {"b": 1, "c": ["x", "y"]}}
    assert problems == []
    assert [lines.line_of(path) for path in [("a",), ("a", "b"), ("a", "c"), ("a", "c", 1)]] == [1, 2, 3, 5]


def test_missing_key_gets_the_line_of_its_nearest_parent():
    _, lines, _ = read("a:\n  b:\n    c: 1\n")

    assert lines.line_of(("a", "b", "missing", "deeper")) == 2
    assert lines.line_of(("nowhere",)) == 1


def test_plain_values_read_as_numbers_booleans_and_null_only_when_unambiguous():
    data, _, _ = read("a: 5038\nb: true\nc: ~\nd: 0101\ne: yes\nf: +33612000001\ng: 2024-01-02\nh: '7'\n")

    assert data == {"a": 5038, "b": True, "c": None, "d": "0101", "e": "yes", "f": "+33612000001",
                    "g": "2024-01-02", "h": "7"}


def test_empty_document_is_an_empty_mapping():
    assert read("# only a comment\n")[0] == {}


def test_recursive_alias_is_a_yaml_problem():
    data, _, problems = read("a: &loop\n  - *loop\n")

    assert data is None
    assert problems == ["f.yaml:1: (yaml): an alias refers to itself"]  # the anchor


def test_merge_keys_share_line_settings_and_overrides_are_not_duplicates(write_config):
    path = write_config("""\
daemon: {default_region: FR}
asterisk: {ami: {secret: s}}
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers:
  "+33 1 84 88 00 00":
    name: Paris sales line
    queue_group: sales
    crm: &offer {unknown_caller: offer, source: WEB}
  "+33 4 72 00 00 00":
    name: Lyon support line
    queue_group: sales
    crm:
      <<: *offer
      source: SUPPORT
  "+33 5 56 00 00 00":
    name: Bordeaux line
    queue_group: sales
    crm: *offer
""")

    lines = load_settings(path, {}).rules.lines

    assert [(line.crm.unknown_caller.value, line.crm.source) for line in lines.values()] == [
        ("offer", "WEB"), ("offer", "SUPPORT"), ("offer", "WEB")]


def test_problem_in_merged_settings_points_at_the_anchor(write_config):
    path = write_config("""\
daemon: {default_region: FR}
asterisk: {ami: {secret: s}}
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers:
  "+33 1 84 88 00 00":
    name: Paris sales line
    queue_group: sales
    crm: &offer
      unknown_caller: ofer
  "+33 4 72 00 00 00":
    name: Lyon support line
    queue_group: sales
    crm: *offer
""")

    assert problem_lines(path, MINIMAL_ENV) == [
        f"{path}:10: numbers.+33 1 84 88 00 00.crm.unknown_caller: must be one of: create, offer",
        f"{path}:10: numbers.+33 4 72 00 00 00.crm.unknown_caller: must be one of: create, offer"]
