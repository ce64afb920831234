"""The remote CRM adapter the config names (crm.adapter bitrix24 | webhook), built from its
section: the composition root's half of `crm.registry.build_crm` (crm does not read settings)."""
from __future__ import annotations

from .crm.bitrix24.adapter import Bitrix24Crm
from .crm.bitrix24.cache import LookupCache
from .crm.bitrix24.connect import portal_client
from .crm.bitrix24.operations import EmployeeDirectory, EmployeeLink
from .crm.registry import RemoteCrm
from .crm.webhook.adapter import WebhookCrm
from .crm.webhook.sender import WebhookSender
from .core.ports import CrmError
from .settings import Settings
from .settings.schema import CrmAdapterKind


class RemoteCrmError(CrmError):
    """The remote CRM cannot be set up from the config (a missing OAuth tokens file)."""


def remote_crm(settings: Settings) -> RemoteCrm | None:
    """The adapter of crm.adapter, or None for the embedded CRM."""
    crm = settings.crm
    deadline = settings.daemon.crm_deadline_ms / 1000
    if crm.adapter is CrmAdapterKind.BITRIX24 and crm.bitrix24 is not None:
        return bitrix24_crm(settings)
    if crm.adapter is CrmAdapterKind.WEBHOOK and crm.webhook is not None:
        hook = crm.webhook
        sender = WebhookSender(hook.url, hook.secret.get_secret_value(), lookup_url=hook.lookup_url,
                               timeout_seconds=hook.timeout_ms / 1000)
        return WebhookCrm(sender, deadline_seconds=deadline, mode=crm.mode, pipeline=crm.simple.pipeline)
    return None


def bitrix24_crm(settings: Settings) -> Bitrix24Crm:
    crm = settings.crm
    portal = crm.bitrix24
    assert portal is not None
    base_dir = settings.path.parent
    if portal.oauth is not None:
        tokens = base_dir / portal.oauth.tokens_file
        if not tokens.is_file():
            raise RemoteCrmError(
                f"crm.bitrix24.oauth.tokens_file: {tokens} does not exist: write the tokens the portal gave "
                f"when the local application was installed ({{\"access_token\": ..., \"refresh_token\": ...}})")
    client = portal_client(
        webhook_url=portal.webhook_url.get_secret_value() if portal.webhook_url is not None else None,
        oauth_portal=portal.oauth.portal if portal.oauth else None,
        client_id=portal.oauth.client_id if portal.oauth else None,
        client_secret=portal.oauth.client_secret.get_secret_value() if portal.oauth else None,
        tokens_file=portal.oauth.tokens_file if portal.oauth else None,
        **({"token_url": portal.oauth.token_url} if portal.oauth else {}),
        per_second=portal.rate.per_second, burst=portal.rate.burst, timeout_seconds=portal.timeout_ms / 1000,
        base_dir=base_dir)
    employees = settings.rules.employees
    directory = EmployeeDirectory(employee_links(settings))
    return Bitrix24Crm(client, directory, employees, deadline_seconds=settings.daemon.crm_deadline_ms / 1000,
                       pipelines=portal.pipelines, mode=crm.mode, cache=LookupCache(ttl_seconds=10.0),
                       card=portal.card)


def employee_links(settings: Settings) -> list[EmployeeLink]:
    """Each employee of the config and what finds their portal user: `crm_user`, else the extension."""
    return [EmployeeLink(name, int(user) if (user := settings.crm_users.get(name)) else None, employee.extension)
            for name, employee in settings.rules.employees.items()]
