"""Checks of the remote CRM sections (crm.bitrix24, crm.webhook, employees' crm_user) that
need more than one key: which section the adapter needs, webhook or OAuth, the simple mode's
pipeline, the employees the portal cannot match."""
from __future__ import annotations

import re
from typing import Any

from agi_daemon.core.model import CrmMode

from .errors import ProblemLog
from .schema import CrmAdapterKind


def check_remote_crm(sections: dict[str, Any], log: ProblemLog) -> None:
    crm = sections.get("crm")
    if crm is None:
        return
    if crm.adapter is CrmAdapterKind.BITRIX24 and crm.bitrix24 is None:
        log.add(("crm", "bitrix24"), "required when adapter is bitrix24")
    if crm.adapter is CrmAdapterKind.WEBHOOK and crm.webhook is None:
        log.add(("crm", "webhook"), "required when adapter is webhook")
    portal = crm.bitrix24
    if portal is None:
        return
    if portal.webhook_url is None and portal.oauth is None:
        log.add(("crm", "bitrix24"), "give webhook_url (or webhook_url_file) or oauth: how the daemon reaches the portal")
    elif portal.webhook_url is not None and portal.oauth is not None:
        log.add(("crm", "bitrix24"), "give webhook_url or oauth, not both")
    url = portal.webhook_url.get_secret_value().strip() if portal.webhook_url is not None else ""
    # an unreadable secret ("${NAME}" unset, an empty file) is reported as such, once
    if url and "${" not in url and not re.fullmatch(r"https?://[^\s/]+/rest/\d+/[^\s/]+/?", url):
        log.add(("crm", "bitrix24", "webhook_url"),
                "must be a Bitrix24 inbound webhook URL: https://PORTAL/rest/USER_ID/SECRET/")
    if crm.mode is CrmMode.SIMPLE and crm.simple.pipeline not in portal.pipelines:
        log.add(("crm", "bitrix24", "pipelines"),
                f"no deal category for crm.simple.pipeline {crm.simple.pipeline!r}: add `{crm.simple.pipeline}: ID` "
                "(the pipeline's CATEGORY_ID in Bitrix24)")
    if crm.adapter is not CrmAdapterKind.BITRIX24:
        return
    for name, employee in (sections.get("employees") or {}).items():
        if employee.crm_user is not None and not employee.crm_user.isdigit():
            log.add(("employees", name, "crm_user"), "must be the employee's Bitrix24 user id, such as 11")
        elif employee.crm_user is None and employee.extension is None:
            log.add(("employees", name), "no crm_user and no extension: this employee matches no Bitrix24 user",
                    warning=True)
