"""A client from the config's values (the composition root passes them; crm does not read
settings): the inbound webhook URL or the OAuth application, the bucket from `rate`."""
from __future__ import annotations

from pathlib import Path

from .auth import DEFAULT_TOKEN_URL, OAuthAuth, WebhookAuth
from .bucket import LeakyBucket
from .client import Bitrix24Client


def portal_client(*, webhook_url: str | None = None, oauth_portal: str | None = None, client_id: str | None = None,
                  client_secret: str | None = None, tokens_file: str | Path | None = None,
                  token_url: str = DEFAULT_TOKEN_URL, per_second: float = 2.0, burst: int = 50,
                  timeout_seconds: float = 10.0, base_dir: Path = Path(".")) -> Bitrix24Client:
    """`webhook_url`, or the four OAuth values (a relative `tokens_file` starts from
    `base_dir`, the config file's folder). Not opened: call `open()`."""
    bucket = LeakyBucket(per_second, burst)
    if webhook_url:
        return Bitrix24Client(WebhookAuth(webhook_url), bucket, timeout_seconds=timeout_seconds)
    if not (oauth_portal and client_id and client_secret and tokens_file):
        raise ValueError("a Bitrix24 portal needs webhook_url, or oauth portal, client_id, client_secret and tokens_file")
    tokens = Path(tokens_file)
    if not tokens.is_absolute():
        tokens = base_dir / tokens
    auth = OAuthAuth(oauth_portal, client_id, client_secret, tokens, token_url=token_url)
    return Bitrix24Client(auth, bucket, timeout_seconds=timeout_seconds)
