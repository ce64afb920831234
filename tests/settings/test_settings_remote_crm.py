"""The remote CRM sections (crm.bitrix24, crm.webhook, employees' crm_user): read and checked
in full, while `crm.adapter: bitrix24 | webhook` is still refused by this version."""
from __future__ import annotations

from agi_daemon.settings import check_config, load_settings
from agi_daemon.core.call_cards import CardPolicy

from .settings_helpers import MINIMAL, MINIMAL_ENV

WEBHOOK_URL = "https://example.bitrix24.com/rest/1/w3bh00ks3cr3t/"


def config(crm: str, employees: str = "") -> str:
    text = MINIMAL.replace("employees:\n", f"crm:\n{crm}employees:\n{employees}")
    return text


def lines(problems) -> list[str]:
    return [f"{problem.line}: {problem.path}: {problem.message}" + (" (warning)" if problem.warning else "")
            for problem in problems]


def test_bitrix24_section_with_a_webhook_file_is_read_with_its_defaults(write_config, tmp_path):
    (tmp_path / "b24-webhook").write_text(WEBHOOK_URL + "\n")
    path = write_config(config("""\
  bitrix24:
    webhook_url_file: b24-webhook
    card: answered
    pipelines: {general: 0, b2b: 3}
""", "  carol: {name: Carol, crm_user: 11}\n"))
    settings = load_settings(path, MINIMAL_ENV)
    portal = settings.crm.bitrix24
    assert portal.webhook_url.get_secret_value() == WEBHOOK_URL
    assert (portal.rate.per_second, portal.rate.burst, portal.card, portal.pipelines) == (2.0, 50, CardPolicy.ANSWERED,
                                                                                          {"general": 0, "b2b": 3})
    assert "w3bh00ks3cr3t" not in repr(settings.crm)


def test_bitrix24_oauth_section_is_read_with_its_secret_from_the_environment(write_config):
    path = write_config(config("""\
  bitrix24:
    oauth: {portal: "https://example.bitrix24.com", client_id: local.app.1, client_secret: "${B24_SECRET}",
            tokens_file: var/b24-tokens.json}
    rate: {per_second: 5, burst: 250}
"""))
    oauth = load_settings(path, {**MINIMAL_ENV, "B24_SECRET": "cl13nt"}).crm.bitrix24.oauth
    assert (oauth.client_id, oauth.client_secret.get_secret_value(), oauth.tokens_file) == (
        "local.app.1", "cl13nt", "var/b24-tokens.json")
    assert oauth.token_url.startswith("https://")


def test_bitrix24_adapter_section_is_fully_checked(write_config):
    path = write_config(config(f"""\
  adapter: bitrix24
  mode: simple
  simple: {{pipeline: b2b}}
  bitrix24:
    webhook_url: "{WEBHOOK_URL}"
    oauth: {{portal: "https://example.bitrix24.com", client_id: app, client_secret: s, tokens_file: t.json}}
    rate: {{per_second: 0, burst: 50}}
    card: popup
""", "  carol: {name: Carol, crm_user: alice}\n  dave: {name: Dave}\n"))
    assert lines(check_config(path, MINIMAL_ENV)) == [  # a broken crm section: its own keys first
        "11: crm.bitrix24.rate.per_second: must be greater than 0.0",
        "12: crm.bitrix24.card: must be one of: none, ringing, answered",
    ]
    path = write_config(config(f"""\
  adapter: bitrix24
  mode: simple
  simple: {{pipeline: b2b}}
  bitrix24:
    webhook_url: "{WEBHOOK_URL}"
    oauth: {{portal: "https://example.bitrix24.com", client_id: app, client_secret: s, tokens_file: t.json}}
""", "  carol: {name: Carol, crm_user: alice}\n  dave: {name: Dave}\n"))
    assert lines(check_config(path, MINIMAL_ENV)) == [
        "8: crm.bitrix24: give webhook_url or oauth, not both",
        "8: crm.bitrix24.pipelines: no deal category for crm.simple.pipeline 'b2b': add `b2b: ID` "
        "(the pipeline's CATEGORY_ID in Bitrix24)",
        "12: employees.carol.crm_user: must be the employee's Bitrix24 user id, such as 11",
        "13: employees.dave: no crm_user and no extension: this employee matches no Bitrix24 user (warning)",
    ]


def test_bitrix24_webhook_url_of_the_wrong_shape_is_reported_without_its_text(write_config):
    path = write_config(config("""\
  bitrix24: {webhook_url: "https://example.bitrix24.com/s3cr3t-only"}
"""))
    problems = lines(check_config(path, MINIMAL_ENV))
    assert problems == ["5: crm.bitrix24.webhook_url: must be a Bitrix24 inbound webhook URL: "
                        "https://PORTAL/rest/USER_ID/SECRET/"]
    assert "s3cr3t" not in "".join(problems)


def test_bitrix24_section_without_a_way_to_reach_the_portal_is_an_error(write_config):
    path = write_config(config("  bitrix24: {card: none}\n"))
    assert lines(check_config(path, MINIMAL_ENV)) == [
        "5: crm.bitrix24: give webhook_url (or webhook_url_file) or oauth: how the daemon reaches the portal"]


def test_webhook_secret_unset_is_a_warning_while_the_adapter_is_embedded(write_config):
    path = write_config(config("""\
  webhook: {url: "https://crm.example.com/events", secret: "${HOOK_SECRET}", lookup_url: "https://crm.example.com/lookup"}
"""))
    assert lines(check_config(path, MINIMAL_ENV)) == [
        "5: crm.webhook.secret: environment variable HOOK_SECRET is not set (not needed while crm.adapter is embedded) "
        "(warning)"]
    settings = load_settings(path, {**MINIMAL_ENV, "HOOK_SECRET": "k"})
    assert settings.crm.webhook.lookup_url == "https://crm.example.com/lookup"


def test_webhook_adapter_needs_its_section_and_checks_its_urls(write_config):
    path = write_config(config("  adapter: webhook\n"))
    assert lines(check_config(path, MINIMAL_ENV)) == [
        "4: crm.webhook: required when adapter is webhook"]
    path = write_config(config("  adapter: webhook\n  webhook: {url: crm.example.com, secret: k}\n"))
    assert lines(check_config(path, MINIMAL_ENV)) == ["6: crm.webhook.url: must be an http:// or https:// URL"]


def test_example_remote_crm_sections_once_uncommented_are_valid(write_config):
    from .settings_helpers import EXAMPLE, EXAMPLE_ENV

    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("  # bitrix24:")
    end = text.index("\n\n", start)
    block = text[start:end].replace("\n  # ", "\n  ").removeprefix("  # ")
    path = write_config(text[:start] + "  " + block + text[end:])
    environ = {**EXAMPLE_ENV, "AGI_DAEMON_B24_WEBHOOK": WEBHOOK_URL, "AGI_DAEMON_WEBHOOK_SECRET": "k"}
    assert check_config(path, environ) == []
    settings = load_settings(path, environ)
    assert settings.crm.bitrix24.webhook_url.get_secret_value() == WEBHOOK_URL
    assert settings.crm.webhook.url == "https://crm.example.com/agi-daemon/events"


def test_reload_changing_the_bitrix24_card_says_it_takes_effect_at_the_next_restart(write_config, tmp_path):
    from agi_daemon.config_reload import what_changed

    (tmp_path / "b24-webhook").write_text(WEBHOOK_URL + "\n")
    before = load_settings(write_config(config("  bitrix24: {webhook_url_file: b24-webhook, card: ringing}\n")),
                           MINIMAL_ENV)
    after = load_settings(write_config(config("  bitrix24: {webhook_url_file: b24-webhook, card: none}\n")),
                          MINIMAL_ENV)
    assert what_changed(before, after) == ["changes to crm.bitrix24 take effect at the next restart; until then the "
                                           "daemon runs with the values it started with (the warnings above are "
                                           "the file's)"]
    assert what_changed(before, before) == []
    new_pipeline = load_settings(write_config(config(
        "  bitrix24: {webhook_url_file: b24-webhook, card: ringing, pipelines: {general: 0, sales2: 7}}\n")), MINIMAL_ENV)
    assert what_changed(before, new_pipeline) == []  # taken at once, with the rules (Bitrix24Crm.pipelines_changed)
