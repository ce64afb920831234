"""The mistakes people make typing YAML by hand, reported where they are and in plain words."""
from __future__ import annotations

import pytest

from .settings_helpers import MINIMAL, problem_lines


def test_key_indented_too_far_is_reported_on_its_own_line_with_the_indentation_expected(write_config):
    text = MINIMAL.replace('  bob: {name: Bob Durand, extension: "102"}', '   bob: {name: Bob Durand, extension: "102"}')
    path = write_config(text)
    assert problem_lines(path) == [
        f"{path}:6: (yaml): wrong indentation: 'bob:' is indented by 3 spaces, the keys around it by 2"]


def test_key_pushed_left_out_of_its_section_is_reported_on_its_own_line_not_the_next(write_config):
    text = """\
daemon:
default_region: FR
  fastagi:
    listen: "127.0.0.1:4573"
"""
    path = write_config(text)
    assert problem_lines(path) == [
        f"{path}:2: (yaml): wrong indentation: 'default_region:' is indented by 0 spaces, the keys around it by 2"]


def test_value_continued_on_a_deeper_line_is_reported_on_that_line(write_config):
    text = MINIMAL.replace("numbers:\n", "numbers:\n").replace(
        '  alice: {name: Alice Martin, extension: "101"}\n',
        '  alice:\n    name: Alice Martin\n      extension: "101"\n')
    path = write_config(text)
    assert problem_lines(path) == [
        f"{path}:7: (yaml): wrong indentation: 'extension:' is indented by 6 spaces, the keys around it by 4"]


def test_every_tab_in_the_indentation_is_reported_with_the_fix(write_config):
    path = write_config("daemon:\n\tdefault_region: FR\nasterisk:\n \tami: {secret: x}\n")
    assert problem_lines(path) == [
        f"{path}:2: (yaml): a tab in the indentation: indent with spaces",
        f"{path}:4: (yaml): a tab in the indentation: indent with spaces",
    ]


@pytest.mark.parametrize("written, where, meant", [
    ("daemon: {default_region: FR}", "daemon: {default_regoin: FR, default_region: FR}", "daemon.default_regoin: unknown key (did you mean default_region?)"),
    ("  sales: {members: [alice, bob]}", "  sales: {members: [alice, bob], ring_second: 5}", "queue_groups.sales.ring_second: unknown key (did you mean ring_seconds?)"),
    ("  ami: {secret:", "  ami: {secert: x, secret:", "asterisk.ami.secert: unknown key (did you mean secret?)"),
    ("employees:", "employes: {}\nemployees:", "employes: unknown key (did you mean employees?)"),
    ('"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}',
     '"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales, crm: {unkown_caller: offer}}',
     "numbers.+33 1 84 88 00 00.crm.unkown_caller: unknown key (did you mean unknown_caller?)"),
])
def test_misspelt_key_suggests_the_key_meant(write_config, written, where, meant):
    path = write_config(MINIMAL.replace(written, where, 1))
    lines = problem_lines(path)
    assert len(lines) == 1 and lines[0].endswith(meant), lines


def test_unknown_key_with_nothing_close_lists_the_keys_of_its_section(write_config):
    path = write_config(MINIMAL + "log_level: debug\n")
    assert problem_lines(path) == [f"{path}:11: log_level: unknown key (the sections are: daemon, asterisk, "
                                   "crm, employees, queue_groups, numbers)"]
