"""The example config/agi-daemon.yaml loads and gives the routing rules the admin wrote."""
from __future__ import annotations

from ipaddress import ip_network

from agi_daemon.core.model import CreateFor, CrmMode, QueueStrategy, UnknownCaller
from agi_daemon.settings import EventsInterface, Listen, check_config, load_settings
from .settings_helpers import EXAMPLE, EXAMPLE_ENV, MINIMAL, MINIMAL_ENV


def test_example_config_with_secrets_in_environment_loads_without_problems():
    assert check_config(EXAMPLE, EXAMPLE_ENV) == []


def test_example_config_builds_lines_keyed_by_e164_in_file_order():
    rules = load_settings(EXAMPLE, EXAMPLE_ENV).rules

    assert list(rules.lines) == ["+33184880000", "+33472000000"]
    paris, lyon = rules.lines.values()
    assert (paris.name, paris.queue_group) == ("Paris sales line", "sales")
    assert paris.crm.unknown_caller is UnknownCaller.CREATE
    assert paris.crm.create_for is CreateFor.INCOMING
    assert (lyon.name, lyon.queue_group) == ("Lyon support line", "support")
    assert lyon.crm.unknown_caller is UnknownCaller.OFFER
    assert lyon.crm.reassign_on_manual_transfer is False


def test_example_config_builds_employees_and_queue_groups():
    rules = load_settings(EXAMPLE, EXAMPLE_ENV).rules

    assert list(rules.employees) == ["alice", "bob", "carol"]
    assert rules.employees["alice"].phones == ("+33612000001",)
    assert rules.employees["alice"].line == "+33184880000"
    assert rules.employees["bob"].line is None
    assert rules.employee_by_extension("103").id == "carol"
    assert rules.queue_groups["sales"].members == ("alice", "bob")
    assert rules.queue_groups["support"].strategy is QueueStrategy.RING_ALL


def test_example_config_builds_crm_policy_and_dialing():
    settings = load_settings(EXAMPLE, EXAMPLE_ENV)

    assert settings.rules.crm.mode is CrmMode.CLASSIC
    assert settings.rules.crm.exception_phones == {"+33140000000"}
    assert settings.rules.crm.exception_emails == {"noreply@example.com"}
    assert settings.rules.dialing.endpoint_template == "PJSIP/{extension}"
    assert settings.crm.embedded.database == f"sqlite:///{EXAMPLE.parent / 'var' / 'crm.sqlite3'}"  # beside the file


def test_example_config_reads_daemon_and_asterisk_sections():
    settings = load_settings(EXAMPLE, EXAMPLE_ENV)

    assert settings.daemon.fastagi.listen == Listen("127.0.0.1", 4573)
    assert settings.daemon.fastagi.allowed_peers == (ip_network("127.0.0.1/32"),)
    assert str(settings.daemon.web.listen) == "127.0.0.1:8080"
    assert settings.daemon.crm_deadline_ms == 300
    assert settings.asterisk.events is EventsInterface.AMI
    assert settings.asterisk.ami.secret.get_secret_value() == "ami-s3cret"
    assert settings.asterisk.ari is not None
    assert settings.asterisk.ari.password.get_secret_value() == "ari-pa55word"


def test_minimal_config_gets_the_documented_defaults(write_config):
    settings = load_settings(write_config(MINIMAL), MINIMAL_ENV)

    fastagi = settings.daemon.fastagi
    assert (fastagi.max_header_bytes, fastagi.header_timeout_ms, fastagi.max_sessions) == (16384, 2000, 1000)
    assert settings.daemon.crm_deadline_ms == 300
    assert (settings.asterisk.ami.host, settings.asterisk.ami.port) == ("127.0.0.1", 5038)
    assert settings.asterisk.ari is None
    assert settings.asterisk.trunk_template == "PJSIP/{number}@trunk"
    assert (settings.rules.crm.pipeline, settings.rules.crm.create_with.value) == ("general", "contact")
    line = settings.rules.lines["+33184880000"]
    assert (line.crm.source, line.crm.responsible_ring_seconds) == ("CALL", 15)
    assert settings.rules.queue_groups["sales"].ring_seconds == 20
