"""A portal client from the config's values, and the Retry-After hint's two forms (at most
MAX_RETRY_AFTER_SECONDS; no hint for a value that is negative, infinite or not a number)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from agi_daemon.crm.bitrix24.auth import OAuthAuth, Tokens, WebhookAuth, write_tokens
from agi_daemon.crm.bitrix24.connect import portal_client
from agi_daemon.crm.remote_answer import MAX_RETRY_AFTER_SECONDS, retry_after


def test_webhook_url_gives_a_webhook_client_with_the_configured_bucket():
    client = portal_client(webhook_url="https://example.bitrix24.com/rest/7/s3cr3t/", per_second=5, burst=250)
    assert isinstance(client._auth, WebhookAuth)
    assert (client.host, client.bucket.per_second, client.bucket.capacity) == ("example.bitrix24.com", 5, 248)
    assert "s3cr3t" not in repr(client) + repr(client._auth)


def test_oauth_tokens_file_is_found_beside_the_config(tmp_path: Path):
    write_tokens(tmp_path / "var" / "tokens.json", Tokens("a", "r"))
    client = portal_client(oauth_portal="https://example.bitrix24.com", client_id="app", client_secret="cs",
                           tokens_file="var/tokens.json", base_dir=tmp_path)
    assert isinstance(client._auth, OAuthAuth)
    assert client._auth.token() == "a"


@pytest.mark.parametrize("values", [{}, {"oauth_portal": "https://example.bitrix24.com", "client_id": "app"}])
def test_portal_client_without_a_way_in_is_refused(values):
    with pytest.raises(ValueError, match="needs webhook_url"):
        portal_client(**values)


def test_webhook_url_of_another_shape_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as raised:
        WebhookAuth("https://example.bitrix24.com/s3cr3t")
    assert "s3cr3t" not in str(raised.value)


NOW = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("header", "seconds"), [
    ("7", 7.0), ("30", 30.0), (" 30 ", 30.0), ("0", 0.0), ("0.5", 0.5), ("Wed, 02 Dec 2026 03:00:30 GMT", 30.0),
    ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),  # a date past: now
    ("soon", None), ("", None), (None, None),
    ("-3", None), ("-5", None), ("inf", None), ("-inf", None), ("Infinity", None), ("nan", None), ("1e400", None),
    ("1e9", MAX_RETRY_AFTER_SECONDS), (str(MAX_RETRY_AFTER_SECONDS + 1), MAX_RETRY_AFTER_SECONDS),
    (format_datetime(NOW + timedelta(days=3 * 365), usegmt=True), MAX_RETRY_AFTER_SECONDS),
    ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_SECONDS),
])
def test_retry_after_reads_seconds_or_an_http_date_up_to_the_maximum(header, seconds):
    assert retry_after(header, now=NOW) == seconds
