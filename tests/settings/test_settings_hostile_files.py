"""Files that once wedged or crashed the loader (issue 12, findings 4, 5, 6, 11, 12): each is
now one clear problem line, found at once."""
from __future__ import annotations

import os
import time

import pytest

from agi_daemon.settings import check_config, load_settings
from agi_daemon.settings.files import MAX_CONFIG_BYTES, MAX_SECRET_BYTES
from agi_daemon.settings.yaml_lines import MAX_DEPTH

from .settings_helpers import MINIMAL, MINIMAL_ENV, problem_lines


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The 'billion laughs' file: each level lists the level before `width` times."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int = 9, width: int = 9) -> str:
    """The same with merge keys: each mapping merges the one before `width` times."""
    lines = ["m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * width)}], k{i}: 1}}" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("bomb, line", [(alias_bomb(), 6), (merge_bomb(), 5)], ids=["aliases", "merge-keys"])
def test_alias_or_merge_bomb_is_refused_at_once_with_its_line(write_config, bomb, line):
    path = write_config(bomb)
    started = time.monotonic()

    problems = [str(problem) for problem in check_config(path, MINIMAL_ENV)]

    assert time.monotonic() - started < 1.0
    assert problems == [f"{path}:{line}: (yaml): the file expands to more than 100,000 values (each use of an "
                        "alias *name or a merge key << counts all the values it repeats)"]


def test_aliases_used_reasonably_still_work(write_config):
    path = write_config(MINIMAL.replace("alice: {name: Alice Martin", "alice: &who {name: Alice Martin")
                        .replace('bob: {name: Bob Durand, extension: "102"}', 'bob: {<<: *who, extension: "102"}'))

    assert load_settings(path, MINIMAL_ENV).rules.employees["bob"].name == "Alice Martin"


def test_config_file_larger_than_the_limit_is_refused_unread(write_config):
    path = write_config(MINIMAL + "#" * MAX_CONFIG_BYTES + "\n")

    assert problem_lines(path) == [f"{path}:1: (file): cannot read the config file: larger than {MAX_CONFIG_BYTES:,} bytes"]


def test_deeply_nested_yaml_is_a_problem_not_a_recursion_error(write_config):
    path = write_config("daemon: " + "[" * 3000 + "]" * 3000 + "\n")

    assert problem_lines(path) == [f"{path}:1: (yaml): nested more than {MAX_DEPTH} levels deep"]


def test_nul_byte_is_a_problem_with_its_line(write_config):
    path = write_config(MINIMAL.replace("Paris sales line", "Paris\0sales line"))

    assert problem_lines(path) == [f"{path}:10: (yaml): character U+0000 is not allowed in a YAML file "
                                   "(control characters such as NUL are not)"]


def test_integer_of_thousands_of_digits_is_refused_by_the_schema(write_config):
    path = write_config(MINIMAL.replace('ami: {secret: "${AMI_SECRET}"}', 'ami: {secret: "${AMI_SECRET}", port: ' + "9" * 5000 + "}"))

    [problem] = problem_lines(path)
    assert problem.startswith(f"{path}:3: asterisk.ami.port: ")


def secret_file_config(write_config, target: str):
    return write_config(MINIMAL.replace('ami: {secret: "${AMI_SECRET}"}', f'ami: {{secret_file: "{target}"}}'))


def test_secret_file_pointing_at_a_fifo_is_refused_without_blocking(write_config, tmp_path):
    os.mkfifo(tmp_path / "ami.fifo")  # nobody ever writes to it
    path = secret_file_config(write_config, "ami.fifo")

    assert problem_lines(path) == [f"{path}:3: asterisk.ami.secret_file: cannot read secret file {tmp_path}/ami.fifo: "
                                   "not a regular file (a FIFO, device or directory cannot be read)"]


def test_secret_file_pointing_at_dev_zero_is_refused_unread(write_config):
    path = secret_file_config(write_config, "/dev/zero")

    assert problem_lines(path) == [f"{path}:3: asterisk.ami.secret_file: cannot read secret file /dev/zero: "
                                   "not a regular file (a FIFO, device or directory cannot be read)"]


def test_secret_file_larger_than_the_limit_is_refused(write_config, tmp_path):
    (tmp_path / "ami.secret").write_text("x" * (MAX_SECRET_BYTES + 1))
    path = secret_file_config(write_config, "ami.secret")

    assert problem_lines(path) == [f"{path}:3: asterisk.ami.secret_file: cannot read secret file {tmp_path}/ami.secret: "
                                   f"larger than {MAX_SECRET_BYTES:,} bytes"]


def test_secret_file_with_a_line_break_inside_is_refused(write_config, tmp_path):
    (tmp_path / "ami.secret").write_text("first\r\nAction: Logoff\n")
    path = secret_file_config(write_config, "ami.secret")

    assert problem_lines(path) == [f"{path}:3: asterisk.ami.secret_file: secret file {tmp_path}/ami.secret: "
                                   "a secret cannot contain a line break (CR or LF) except one at the end"]


def test_secret_file_with_only_a_trailing_newline_is_read(write_config, tmp_path):
    (tmp_path / "ami.secret").write_text("s3cret\n")
    path = secret_file_config(write_config, "ami.secret")

    assert load_settings(path, {}).asterisk.ami.secret.get_secret_value() == "s3cret"


@pytest.mark.parametrize("value", ["a\rb", "a\nAction: Logoff"])
def test_secret_from_the_environment_with_a_line_break_is_refused(write_config, value):
    path = write_config(MINIMAL)

    assert problem_lines(path, {"AMI_SECRET": value}) == [
        f"{path}:3: asterisk.ami.secret: a secret cannot contain a line break (CR or LF)"]


@pytest.mark.parametrize("template", [
    "Local/{extension:03d}@employees", "Local/{extension:>50000000}@employees", "Local/{extension!r}@employees",
    "Local/{extension}{extension:x}@employees", "Local/{extension.real}@employees", "Local/{extension[0]}@employees",
])
def test_template_with_a_format_spec_or_conversion_is_refused(write_config, template):
    path = write_config(MINIMAL.replace("asterisk:\n", f'asterisk:\n  endpoint_template: "{template}"\n'))

    assert problem_lines(path) == [
        f"{path}:3: asterisk.endpoint_template: must contain {{extension}} and no other {{...}} field, "
        "without format spec or conversion (write {{ and }} for literal braces)"]


def test_template_repeating_the_plain_field_is_accepted(write_config):
    path = write_config(MINIMAL.replace("asterisk:\n", 'asterisk:\n  trunk_template: "PJSIP/{number}@trunk-{{x}}-{number}"\n'))

    assert load_settings(path, MINIMAL_ENV).rules.dialing.trunk_template == "PJSIP/{number}@trunk-{{x}}-{number}"


@pytest.mark.parametrize("listen", ["[::1:14701", "::1:14701", "[::1]x:14701", "[127.0.0.1]:14701", "bad host:14701",
                                    "127.0.0.1:+99", "127.0.0.1:٤٥٧٣"])
def test_malformed_listen_address_is_refused(write_config, listen):
    path = write_config(MINIMAL.replace("daemon: {default_region: FR}",
                                        f'daemon: {{default_region: FR, fastagi: {{listen: "{listen}"}}}}'))

    [problem] = problem_lines(path)
    assert problem.startswith(f"{path}:1: daemon.fastagi.listen: must be host:port, e.g. 127.0.0.1:4573 or [::1]:4573")


@pytest.mark.parametrize("listen, host", [("[::1]:14701", "::1"), ("localhost:0", "localhost"), ("0.0.0.0:4573", "0.0.0.0")])
def test_well_formed_listen_address_is_accepted(write_config, listen, host):
    path = write_config(MINIMAL.replace("daemon: {default_region: FR}",
                                        f'daemon: {{default_region: FR, fastagi: {{listen: "{listen}"}}}}'))

    assert load_settings(path, MINIMAL_ENV).daemon.fastagi.listen.host == host


def test_allowed_peers_of_every_address_is_a_clear_warning(write_config):
    path = write_config(MINIMAL.replace("daemon: {default_region: FR}",
                                        'daemon: {default_region: FR, fastagi: {allowed_peers: ["0.0.0.0/0", "::/0"]}}'))

    warnings = [str(problem) for problem in check_config(path, MINIMAL_ENV)]

    assert warnings == [
        f"{path}:1: daemon.fastagi.allowed_peers.{i}: warning: {net} allows every address: FastAGI is open to every "
        "host that can reach it (anyone may ask where calls go and fill its sessions): list the Asterisk servers' addresses"
        for i, net in enumerate(["0.0.0.0/0", "::/0"])]
    assert [str(w) for w in load_settings(path, MINIMAL_ENV).warnings] == warnings


def test_name_longer_than_the_crm_column_is_refused(write_config):
    path = write_config(MINIMAL.replace("Paris sales line", "P" * 256))

    assert problem_lines(path) == [f"{path}:10: numbers.+33 1 84 88 00 00.name: must be at most 255 characters"]


@pytest.mark.parametrize("text, line, message", [
    ("%YAML 1." + "9" * 5000 + "\n---\na: 1\n", 1, "cannot be read: Exceeds the limit (4300 digits) for integer string conversion"),
    ('a: 1\nb: !!int "' + "9" * 5000 + '"\n', 2, "not a int value YAML can read"),
    ('a: !!timestamp "99999-01-01"\n', 1, "not a timestamp value YAML can read"),
])
def test_values_pyyaml_itself_cannot_read_are_problems_not_tracebacks(write_config, text, line, message):
    path = write_config(text)

    assert problem_lines(path) == [f"{path}:{line}: (yaml): {message}"]
