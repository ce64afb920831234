"""The lines the daemon writes at start and stop, the ones an admin looks for in the log."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from sqlalchemy.engine import make_url

from .settings import Settings


def ready_line(settings: Settings, agi_port: int) -> str:
    """One line saying the daemon is ready and what it serves:
    "agi-daemon 0.1.0 ready: FastAGI on 127.0.0.1:4573, 2 lines, 3 employees, ..."."""
    rules, ami = settings.rules, settings.asterisk.ami
    return (f"agi-daemon {_version()} ready: FastAGI on {settings.daemon.fastagi.listen.host}:{agi_port}, "
            f"{_count(len(rules.lines), 'line')}, {_count(len(rules.employees), 'employee')}, "
            f"{_count(len(rules.queue_groups), 'queue group')}, CRM {_crm(settings)}, "
            f"call tracking over AMI {ami.host}:{ami.port}, config {settings.path}")


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
