"""Every problem of a file is reported at once, sorted by line."""
from __future__ import annotations

from pydantic import BaseModel, SecretStr

from agi_daemon.settings import Problem, check_config, schema
from agi_daemon.settings.secrets import SECRET_KEYS

from .settings_helpers import MINIMAL, MINIMAL_ENV


def test_problem_text_is_file_line_key_path_message():
    problem = Problem("agi-daemon.yaml", 12, "queue_groups.sales.members", "required")

    assert str(problem) == "agi-daemon.yaml:12: queue_groups.sales.members: required"


def test_problems_of_every_kind_are_reported_together_by_line(write_config):
    path = write_config("""\
daemon:
  default_region: FR
  crm_deadline_ms: 0
asterisk:
  ami: {secret: "${AMI_SECRET}", port: many}
crm: {mode: simple, simple: {create_with: person}}
employees:
  alice: {name: Alice Martin, extension: "101", line: "+33 1 99 99 99 99"}
  bob: {name: Bob Durand, extension: "101", phones: ["nope"]}
queue_groups:
  sales: {members: [alice, carol]}
  support: {members: [bob], ring_seconds: -1}
numbers:
  "+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales, colour: blue}
  "+33 4 72 00 00 00": {name: Lyon support line, queue_group: helpdesk}
""")

    assert check_config(path, {}) == [
        Problem(str(path), 3, "daemon.crm_deadline_ms", "must be greater than 0"),
        Problem(str(path), 5, "asterisk.ami.port", "must be a whole number"),
        Problem(str(path), 5, "asterisk.ami.secret", "environment variable AMI_SECRET is not set"),
        Problem(str(path), 6, "crm.simple.create_with", "must be one of: contact, company"),
        Problem(str(path), 12, "queue_groups.support.ring_seconds", "must be greater than 0"),
        Problem(str(path), 14, "numbers.+33 1 84 88 00 00.colour", "unknown key (known keys: name, queue_group, crm)"),
    ]


def test_cross_reference_problems_are_reported_when_their_sections_are_valid(write_config):
    path = write_config("""\
daemon: {default_region: FR}
asterisk:
  ami: {secret: "${AMI_SECRET}", port: many}
employees:
  alice: {name: Alice Martin, extension: "101", line: "+33 1 99 99 99 99"}
  bob: {name: Bob Durand, extension: "101", phones: ["nope"]}
queue_groups:
  sales: {members: [alice, carol]}
numbers:
  "+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}
  "+33 4 72 00 00 00": {name: Lyon support line, queue_group: helpdesk}
""")

    assert [str(problem) for problem in check_config(path, MINIMAL_ENV)] == [
        f"{path}:3: asterisk.ami.port: must be a whole number",
        f"{path}:5: employees.alice.line: not one of the numbers: +33 1 99 99 99 99",
        f"{path}:6: employees.bob.extension: extension 101 is already alice's",
        f"{path}:6: employees.bob.phones.0: not a phone number: nope",
        f"{path}:8: queue_groups.sales.members.1: unknown employee: carol",
        f"{path}:11: numbers.+33 4 72 00 00 00.queue_group: unknown queue group: helpdesk",
    ]


def test_valid_file_has_no_problems(write_config):
    assert check_config(write_config(MINIMAL), MINIMAL_ENV) == []


def test_secret_keys_are_exactly_the_secret_fields_of_the_schema():
    def secret_fields(model: type[BaseModel]) -> set[str]:
        names = set()
        for name, field in model.model_fields.items():
            if field.annotation in (SecretStr, SecretStr | None):
                names.add(name)
        return names

    models = [value for value in vars(schema).values()
              if isinstance(value, type) and issubclass(value, BaseModel)]

    assert set().union(*map(secret_fields, models)) == SECRET_KEYS
