"""The lines the daemon writes at start and stop, the ones an admin looks for in the log."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from sqlalchemy.engine import make_url

from .asterisk.ari.client import without_userinfo
from .settings import EventsInterface, Settings


def ready_line(settings: Settings, agi_port: int) -> str:
    """One line saying the daemon is ready and what it serves:
    "agi-daemon 0.1.0 ready: FastAGI on 127.0.0.1:4573, 2 lines, 3 employees, ..."."""
    rules = settings.rules
    return (f"agi-daemon {_version()} ready: FastAGI on {settings.daemon.fastagi.listen.host}:{agi_port}, "
            f"{_count(len(rules.lines), 'line')}, {_count(len(rules.employees), 'employee')}, "
            f"{_count(len(rules.queue_groups), 'queue group')}, CRM {_crm(settings)}, "
            f"{_tracking(settings)}, config {settings.path}")


def _tracking(settings: Settings) -> str:
    asterisk = settings.asterisk
    if asterisk.events is EventsInterface.ARI and asterisk.ari is not None:
        return f"Stasis application {asterisk.ari.app} and call tracking over ARI {without_userinfo(asterisk.ari.url)}"
    return f"call tracking over AMI {asterisk.ami.host}:{asterisk.ami.port}"


def _crm(settings: Settings) -> str:
    url = make_url(settings.crm.embedded.database)
    if url.get_backend_name() == "sqlite":
        return url.database or "?"
    return url.render_as_string(hide_password=True)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _version() -> str:
    try:
        return version("agi-daemon")
    except PackageNotFoundError:
        return "(version unknown)"
