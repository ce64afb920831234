"""Broken config files: each mistake is reported as the exact line `FILE:LINE: key.path: message`."""
from __future__ import annotations

import pytest

from agi_daemon.settings import ConfigError, load_settings

from .settings_helpers import problem_lines

HEAD = """\
daemon: {default_region: FR}
asterisk:
  ami: {secret: "${AMI_SECRET}"}
"""  # lines 1-3 of most cases below

CASES = [
    pytest.param(
        HEAD + """\
employees:
  alice: {name: Alice Martin, extension: "101"}
queue_groups:
  sales: {members: [alice]}
numbers:
  "+33 1 84 88 00 00":
    name: Paris sales line
    queue_group: sales
    crm:
      unknown_calller: create
""",
        ["13: numbers.+33 1 84 88 00 00.crm.unknown_calller: unknown key (did you mean unknown_caller?)"],
        id="unknown-key-in-line-crm",
    ),
    pytest.param(
        """\
daemon:
  web: {listen: "127.0.0.1:8080"}
asterisk:
  ami: {secret: "${AMI_SECRET}"}
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["1: daemon.default_region: required"],
        id="missing-key-at-parent-line",
    ),
    pytest.param(
        HEAD + """\
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
""",
        ["1: numbers: required"],
        id="missing-section-at-line-1",
    ),
    pytest.param(
        HEAD + """\
crm:
  mode: clasic
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice], strategy: round_robin}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["5: crm.mode: must be one of: classic, simple",
         "7: queue_groups.sales.strategy: must be one of: in_order, ring_all"],
        id="value-not-among-choices",
    ),
    pytest.param(
        HEAD + """\
employees:
  alice: {name: Alice Martin, extension: "101"}
  bob: {name: Bob Durand}
queue_groups:
  sales:
    members:
      - alice
      - bobb
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["11: queue_groups.sales.members.1: unknown employee: bobb"],
        id="queue-group-member-not-an-employee",
    ),
    pytest.param(
        HEAD + """\
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice, alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["5: queue_groups.sales.members.1: alice is listed twice"],
        id="queue-group-member-listed-twice",
    ),
    pytest.param(
        HEAD + """\
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers:
  "+33 1 84 88 00 00":
    name: Paris sales line
    queue_group: salse
""",
        ["9: numbers.+33 1 84 88 00 00.queue_group: unknown queue group: salse"],
        id="line-names-unknown-queue-group",
    ),
    pytest.param(
        HEAD + """\
employees:
  alice: {name: Alice Martin, extension: "101"}
  bob: {name: Bob Durand, extension: "101"}
queue_groups: {sales: {members: [alice, bob]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["6: employees.bob.extension: extension 101 is already alice's"],
        id="extension-used-twice-reported-at-second",
    ),
    pytest.param(
        HEAD + """\
employees:
  alice:
    name: Alice Martin
    line: "01 84 88 00 01"
  bob: {name: Bob Durand, extension: "102"}
queue_groups: {sales: {members: [bob]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["7: employees.alice.line: not one of the numbers: 01 84 88 00 01"],
        id="employee-line-not-among-numbers",
    ),
    pytest.param(
        HEAD + """\
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers:
  "+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}
  "01 84 88 00 00": {name: Paris again, queue_group: sales}
""",
        ["8: numbers.01 84 88 00 00: same number as '+33 1 84 88 00 00' (+33184880000)"],
        id="two-numbers-normalise-to-same-e164",
    ),
    pytest.param(
        HEAD + """\
employees:
  alice:
    name: Alice Martin
    phones: ["+33 6 12 00 00 01", "12"]
queue_groups: {sales: {members: [alice]}}
crm:
  exceptions:
    phones:
      - "+33 1 40 00 00 00"
      - "call me"
      - "01 40 00 00 0"
numbers: {"not a number": {name: Paris sales line, queue_group: sales}}
""",
        ["7: employees.alice.phones.1: not a phone number: 12",
         "8: queue_groups.sales.members.0: warning: alice has no extension: never rung in this queue group",
         "8: queue_groups.sales.members: no member has an extension: the calls of this queue group would ring nobody",
         "13: crm.exceptions.phones.1: not a phone number: call me",
         "14: crm.exceptions.phones.2: warning: 01 40 00 00 0 reads as +33014000000, which phonenumbers does not "
         "know as a number given out in its country: a digit missing or one too many?",
         "15: numbers.not a number: not a phone number: not a number"],
        id="unreadable-phone-numbers",
    ),
    pytest.param(
        HEAD + """\
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups:
  sales:
    members: []
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["7: queue_groups.sales.members: a queue group needs at least one member"],
        id="empty-queue-group",
    ),
    pytest.param(
        HEAD + """\
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups:
  sales:
    members: [alice]
    ring_seconds: 0
numbers:
  "+33 1 84 88 00 00":
    name: Paris sales line
    queue_group: sales
    crm: {responsible_ring_seconds: -5}
""",
        ["8: queue_groups.sales.ring_seconds: must be greater than 0",
         "13: numbers.+33 1 84 88 00 00.crm.responsible_ring_seconds: must be greater than 0"],
        id="ring-seconds-not-positive",
    ),
    pytest.param(
        """\
daemon:
  default_region: XX
  fastagi:
    listen: "localhost"
    allowed_peers: ["10.0.0.0/8", "not-an-ip"]
  web: {listen: "[::1]:99999"}
  crm_deadline_ms: fast
asterisk:
  ami: {secret: "${AMI_SECRET}", port: 70000}
employees: {alice: {name: Alice Martin, extension: "1 01"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["2: daemon.default_region: unknown region: XX (use a two-letter country code such as FR)",
         "4: daemon.fastagi.listen: must be host:port, e.g. 127.0.0.1:4573 or [::1]:4573",
         "5: daemon.fastagi.allowed_peers.1: not an IP address or network: not-an-ip",
         "6: daemon.web.listen: must be host:port, e.g. 127.0.0.1:4573 or [::1]:4573",
         "7: daemon.crm_deadline_ms: must be a whole number",
         "9: asterisk.ami.port: must be at most 65535",
         "10: employees.alice.extension: must be an extension such as 101 (digits, letters, * or #)"],
        id="daemon-values-of-the-wrong-kind",
    ),
    pytest.param(
        """\
daemon: {default_region: FR}
asterisk:
  ami: {secret: "${AMI_SECRET}"}
  events: ari
  endpoint_template: "PJSIP/{ext}"
  trunk_template: "PJSIP/{number}@{trunk}"
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["5: asterisk.endpoint_template: must contain {extension} and no other {...} field, without format spec or conversion (write {{ and }} for literal braces)",
         "6: asterisk.trunk_template: must contain {number} and no other {...} field, without format spec or conversion (write {{ and }} for literal braces)"],
        id="dialing-templates-without-their-field",
    ),
    pytest.param(
        """\
daemon: {default_region: FR}
asterisk:
  ami: {secret: "${AMI_SECRET}"}
  events: ari
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["2: asterisk.ari: required when events is ari"],
        id="ari-events-without-ari-section",
    ),
    pytest.param(
        """\
daemon: {default_region: FR}
asterisk:
  ami: {secret: s}
  events: ari
  ari: {password: p, app: "agi-daemon,other"}
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["5: asterisk.ari.app: must be a Stasis application name: 1 to 73 letters, digits, '-', '_' or '.' (Asterisk refuses a longer name, and reads a comma as a second application)"],
        id="stasis-app-with-a-comma",
    ),
    pytest.param(
        """\
daemon: {default_region: FR}
asterisk:
  ami: {secret: s}
  events: ari
  ari: {password: p, app: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["5: asterisk.ari.app: must be a Stasis application name: 1 to 73 letters, digits, '-', '_' or '.' (Asterisk refuses a longer name, and reads a comma as a second application)"],
        id="stasis-app-longer-than-asterisk-registers",
    ),
    pytest.param(
        """\
daemon: {default_region: FR}
asterisk: {ami: {secret: s}}
crm: {adapter: bitrix24}
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["3: crm.bitrix24: required when adapter is bitrix24"],
        id="bitrix24-adapter-without-its-section",
    ),
    pytest.param(
        HEAD + """\
employees:
  alice:
    name:
queue_groups: {sales: {members: [alice]}}
numbers:
  "+33 1 84 88 00 00":
    name: Paris sales line
    queue_group: sales
    crm: {route_known_to_responsible: maybe, unknown_caller: [create]}
""",
        ["6: employees.alice.name: needs a value",
         "12: numbers.+33 1 84 88 00 00.crm.unknown_caller: must be one of: create, offer",
         "12: numbers.+33 1 84 88 00 00.crm.route_known_to_responsible: must be true or false"],
        id="empty-value-and-not-a-boolean",
    ),
    pytest.param(
        HEAD + """\
employees: {alice: {name: Alice Martin, extension: "101"}}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
log_level: debug
""",
        ["7: log_level: unknown key (the sections are: daemon, asterisk, crm, employees, queue_groups, numbers)"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        HEAD + """\
employees:
  alice: {name: Alice Martin, extension: "101"}
  alice: {name: Alice Dupont}
queue_groups: {sales: {members: [alice]}}
numbers: {"+33 1 84 88 00 00": {name: Paris sales line, queue_group: sales}}
""",
        ["6: employees.alice: duplicate key (the first one is used)"],
        id="duplicate-key",
    ),
    pytest.param(
        """\
daemon: {default_region: FR}
asterisk:
  ami: {secret: "${AMI_SECRET}"
employees: {alice: {name: Alice Martin, extension: "101"}}
""",
        ["4: (yaml): expected ',' or '}', but got '<scalar>' (while parsing a flow mapping started on line 3)"],
        id="yaml-syntax-error",
    ),
    pytest.param(
        "daemon:\n\tdefault_region: FR\n",
        ["2: (yaml): a tab in the indentation: indent with spaces"],
        id="yaml-tab-indentation",
    ),
    pytest.param(
        "- daemon\n- asterisk\n",
        ["1: (top): the file must be a mapping of sections (daemon, asterisk, crm, ...)"],
        id="file-is-a-list",
    ),
    pytest.param(
        "",
        ["1: daemon: required", "1: asterisk: required", "1: employees: required",
         "1: queue_groups: required", "1: numbers: required"],
        id="empty-file",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_broken_file_reports_exact_problem_lines(write_config, text, expected):
    path = write_config(text)

    assert problem_lines(path) == [f"{path}:{line}" for line in expected]


def test_broken_file_config_error_text_is_one_problem_per_line(write_config):
    path = write_config(HEAD + "employees: {}\nqueue_groups: {}\nnumbers: {}\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, {"AMI_SECRET": "x"})

    assert str(caught.value) == f"{path}:6: numbers: at least one line is needed"


def test_missing_file_reports_it_cannot_be_read(tmp_path):
    path = tmp_path / "nowhere.yaml"

    assert problem_lines(path) == [f"{path}:1: (file): cannot read the config file: No such file or directory"]
