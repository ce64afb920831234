"""Secrets come from `${ENV}` references or `*_file` keys and never show in str/repr."""
from __future__ import annotations

import pytest

from agi_daemon.settings import load_settings

from .settings_helpers import EXAMPLE, EXAMPLE_ENV, problem_lines

TAIL = """\
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
"""


def config(ami: str, ari: str = "") -> str:
    """A valid file but for the asterisk section, whose ami mapping is on line 4."""
    return "daemon: {default_region: FR}\nasterisk:\n  ami:\n    " + ami + "\n" + ari + TAIL


def test_secret_from_environment_is_read(write_config):
    path = write_config(config('secret: "${AGI_DAEMON_AMI_SECRET}"'))

    settings = load_settings(path, {"AGI_DAEMON_AMI_SECRET": "ami-s3cret"})

    assert settings.asterisk.ami.secret.get_secret_value() == "ami-s3cret"


def test_secret_from_unset_environment_variable_is_reported(write_config):
    path = write_config(config('secret: "${AGI_DAEMON_AMI_SECRET}"'))

    assert problem_lines(path, {}) == [
        f"{path}:4: asterisk.ami.secret: environment variable AGI_DAEMON_AMI_SECRET is not set"]


def test_reference_with_invalid_variable_name_is_reported(write_config):
    path = write_config(config('secret: "${AMI SECRET}"'))

    assert problem_lines(path, {}) == [f"{path}:4: asterisk.ami.secret: not an environment variable name: ${{AMI SECRET}}"]


def test_environment_reference_inside_other_text_is_expanded(write_config):
    path = write_config(config("secret: s") + "crm: {embedded: {database: \"sqlite:///${DATA}/crm.sqlite3\"}}\n")

    settings = load_settings(path, {"DATA": "/srv/crm"})

    assert settings.crm.embedded.database == "sqlite:////srv/crm/crm.sqlite3"


def test_double_dollar_writes_a_literal_reference(write_config):
    path = write_config(config('secret: "pa$${NOT_A_VARIABLE}"'))

    assert load_settings(path, {}).asterisk.ami.secret.get_secret_value() == "pa${NOT_A_VARIABLE}"


def test_secret_file_is_read_without_trailing_newline(write_config, tmp_path):
    (tmp_path / "ami").write_text("file-s3cret\n")
    path = write_config(config(f"secret_file: {tmp_path / 'ami'}"))

    assert load_settings(path, {}).asterisk.ami.secret.get_secret_value() == "file-s3cret"


def test_relative_secret_file_is_read_from_config_folder(write_config, tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "ari").write_text("ari-pa55word\r\n")
    path = write_config(config(
        "secret: s", "  ari: {password_file: secrets/ari}\n"))

    settings = load_settings(path, {})

    assert settings.asterisk.ari is not None
    assert settings.asterisk.ari.password.get_secret_value() == "ari-pa55word"


def test_unreadable_secret_file_is_reported(write_config, tmp_path):
    path = write_config(config("secret_file: missing"))

    assert problem_lines(path, {}) == [
        f"{path}:4: asterisk.ami.secret_file: cannot read secret file {tmp_path / 'missing'}: No such file or directory"]


def test_empty_secret_file_is_reported(write_config, tmp_path):
    (tmp_path / "ami").write_text("\n")
    path = write_config(config("secret_file: ami"))

    assert problem_lines(path, {}) == [f"{path}:4: asterisk.ami.secret_file: secret file {tmp_path / 'ami'} is empty"]


def test_secret_and_secret_file_together_are_reported(write_config, tmp_path):
    (tmp_path / "ami").write_text("file-s3cret")
    path = write_config(config("{secret: s, secret_file: ami}"))

    assert problem_lines(path, {}) == [f"{path}:4: asterisk.ami.secret_file: give secret or secret_file, not both"]


def test_file_suffix_on_a_key_that_is_not_a_secret_is_an_unknown_key(write_config, tmp_path):
    path = write_config(config("{secret: s, host_file: ami}"))

    assert problem_lines(path, {}) == [f"{path}:4: asterisk.ami.host_file: unknown key (did you mean host?)"]


@pytest.mark.parametrize("show", [str, repr])
def test_settings_text_never_contains_the_secrets(show):
    settings = load_settings(EXAMPLE, EXAMPLE_ENV)

    text = show(settings) + show(settings.asterisk) + settings.asterisk.model_dump_json()

    assert "ami-s3cret" not in text
    assert "ari-pa55word" not in text
    assert "**********" in text


@pytest.mark.parametrize("written, environ, said", [
    ('secret: ""', {}, "a secret cannot be empty"),
    ('secret: "${AGI_DAEMON_AMI_SECRET}"', {"AGI_DAEMON_AMI_SECRET": ""},
     "is empty: ${AGI_DAEMON_AMI_SECRET} names a variable set to nothing"),
])
def test_an_empty_secret_is_reported(write_config, written, environ, said):
    """A variable exported empty (or a secret written as "") is no secret: an HMAC key of nothing
    signs what anyone can sign, a login with nothing fails far from the file."""
    path = write_config(config(written))

    assert problem_lines(path, environ) == [f"{path}:4: asterisk.ami.secret: {said}"]
