"""A portal client from the config's values, and the Retry-After hint's two forms."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agi_daemon.crm.bitrix24.auth import OAuthAuth, Tokens, WebhookAuth, write_tokens
from agi_daemon.crm.bitrix24.connect import portal_client
from agi_daemon.crm.bitrix24.errors import retry_after


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


@pytest.mark.parametrize(("header", "seconds"), [
    ("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 02 Dec 2026 03:00:30 GMT", 30.0), ("soon", None), (None, None)])
def test_retry_after_reads_seconds_or_an_http_date(header, seconds):
    assert retry_after(header, now=datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)) == seconds
