"""Phone numbers, extensions and regions keep what the admin meant, whatever YAML does to them."""
from __future__ import annotations

from agi_daemon.settings import load_settings

from .settings_helpers import MINIMAL_ENV, problem_lines

HEAD = 'asterisk: {ami: {secret: "${AMI_SECRET}"}}\n'


def test_number_keys_in_any_written_form_become_e164_in_file_order(write_config):
    path = write_config(HEAD + """\
daemon: {default_region: FR}
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers:
  01 84 88 00 00: {name: national, queue_group: sales}
  0033 4 72 00 00 00: {name: international prefix, queue_group: sales}
  +33299000000: {name: unquoted, queue_group: sales}
  "+33 5 56 00 00 00": {name: quoted, queue_group: sales}
""")

    lines = load_settings(path, MINIMAL_ENV).rules.lines

    assert list(lines) == ["+33184880000", "+33472000000", "+33299000000", "+33556000000"]
    assert lines["+33299000000"].name == "unquoted"


def test_national_numbers_are_read_in_the_default_region(write_config):
    path = write_config(HEAD + """\
daemon: {default_region: be}
employees: {alice: {name: Alice Martin, extension: "101", phones: ["0470 12 34 56"]}}
queue_groups: {sales: {members: [alice]}}
numbers: {"02 123 45 67": {name: Brussels, queue_group: sales}}
""")

    rules = load_settings(path, MINIMAL_ENV).rules

    assert rules.default_region == "BE"
    assert list(rules.lines) == ["+3221234567"]
    assert rules.employees["alice"].phones == ("+32470123456",)


def test_unquoted_numbers_and_extensions_keep_their_written_digits(write_config):
    path = write_config(HEAD + """\
daemon: {default_region: FR}
employees:
  alice: {name: Alice Martin, extension: 101, phones: [+33612000001, 0612000002]}
  bob: {name: Bob Durand, extension: 0102}
queue_groups: {sales: {members: [alice, bob]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""")

    employees = load_settings(path, MINIMAL_ENV).rules.employees

    assert employees["alice"].extension == "101"
    assert employees["alice"].phones == ("+33612000001", "+33612000002")
    assert employees["bob"].extension == "0102"


def test_region_no_unquoted_is_norway_not_false(write_config):
    path = write_config(HEAD + """\
daemon: {default_region: NO}
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"22 00 00 00": {name: Oslo, queue_group: sales}}
""")

    assert list(load_settings(path, MINIMAL_ENV).rules.lines) == ["+4722000000"]


def test_employee_phone_on_exception_list_is_allowed(write_config):
    path = write_config(HEAD + """\
daemon: {default_region: FR}
crm: {exceptions: {phones: ["06 12 00 00 01"], emails: [NoReply@Example.com]}}
employees: {alice: {name: Alice Martin, extension: "101", phones: ["+33 6 12 00 00 01"]}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""")

    rules = load_settings(path, MINIMAL_ENV).rules

    assert rules.crm.exception_phones == {"+33612000001"}
    assert rules.employee_with_phone("+33612000001").id == "alice"
    assert rules.crm.exception_emails == {"noreply@example.com"}


def test_phone_of_the_wrong_country_length_is_not_a_phone_number(write_config):
    path = write_config(HEAD + """\
daemon: {default_region: FR}
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88": {name: Paris sales line, queue_group: sales}}
""")

    assert problem_lines(path) == [f"{path}:5: numbers.+33 1 84 88: not a phone number: +33 1 84 88"]
