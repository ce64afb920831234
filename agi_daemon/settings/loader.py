"""The config file in, `Settings` out, or every problem found in it (`FILE:LINE: key.path: message`)."""
from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Mapping

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from agi_daemon.core.model import Dialing, Rules

from .errors import ConfigError, KeyPath, Problem, ProblemLog
from .files import MAX_CONFIG_BYTES, FileRefused, read_text_file
from .messages import known_keys, plain_message, unknown_key
from .remote_crm import check_remote_crm
from .rules import build_rules
from .schema import AsteriskSettings, CrmAdapterKind, CrmSettings, DaemonSettings, EventsInterface, SettingsFile
from .secrets import MissingSecret, resolve_secrets
from .yaml_lines import KeyLines, load_yaml


@dataclass(frozen=True)
class Settings:
    """The running configuration: the daemon's own settings, how to reach Asterisk, the CRM,
    and the routing rules (employees, queue groups and lines, numbers in E.164)."""

    path: Path
    daemon: DaemonSettings
    asterisk: AsteriskSettings
    crm: CrmSettings
    rules: Rules
    warnings: tuple[Problem, ...] = ()  # what check-config warns about: `run` logs them too
    crm_users: Mapping[str, str | None] = dataclasses.field(default_factory=dict)  # employee -> employees.*.crm_user


class SecretsNeeded(Enum):
    """Which secrets a command needs: the daemon's (`run`: those of the parts it connects to)
    or none (`simulate`, `crm ...`, `dialplan` connect to nothing). A secret not needed may be
    missing; its value is then meaningless."""

    RUN = "run"
    NONE = "none"


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None, *,
                  secrets: SecretsNeeded = SecretsNeeded.RUN) -> Settings:
    """Read and check the config file; `environ` (default: the process environment) resolves
    `${NAME}` references. Raises ConfigError listing every problem, by line."""
    settings, problems = _load(Path(path), os.environ if environ is None else environ, secrets)
    if settings is None:
        raise ConfigError(problems)
    return settings


def check_config(path: str | Path, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem in the config file, by line; no error (warnings only, or nothing) when
    the daemon can run with it. A missing secret of a part the daemon does not use (the ARI
    password while events is ami, the AMI secret while events is ari) is a warning."""
    return _load(Path(path), os.environ if environ is None else environ, None)[1]


def _load(path: Path, environ: Mapping[str, str],
          secrets: SecretsNeeded | None) -> tuple[Settings | None, list[Problem]]:
    lines = KeyLines()
    log = ProblemLog(str(path), lines.line_of)
    try:
        text = read_text_file(path, MAX_CONFIG_BYTES)
    except FileRefused as exc:
        log.add_at(1, "(file)", f"cannot read the config file: {exc}")
        return None, log.sorted()
    data = load_yaml(text, lines, log)
    if data is None:  # not YAML: nothing more can be said
        return None, log.sorted()
    if not isinstance(data, dict):
        log.add_at(1, "(top)", "the file must be a mapping of sections (daemon, asterisk, crm, ...)")
        return None, log.sorted()
    data, missing = resolve_secrets(data, environ, path.parent, lines, log)
    sections = _valid_sections(data, log)
    _check_events_interface(sections, log)
    check_remote_crm(sections, log)
    _check_secrets(missing, sections, secrets, log)
    _database_beside_the_file(sections, path.parent, log)
    _warn_open_peers(sections, log)
    rules = _rules(sections, log)
    if rules is None or log.errors():
        return None, log.sorted()
    warnings = tuple(problem for problem in log.sorted() if problem.warning)
    crm_users = {name: entry.crm_user for name, entry in sections["employees"].items()}
    return (Settings(path, sections["daemon"], sections["asterisk"], sections["crm"], rules, warnings, crm_users),
            log.sorted())


def _valid_sections(data: dict[str, Any], log: ProblemLog) -> dict[str, Any]:
    """Each top-level section validated on its own, so that the cross-reference checks still
    run on the valid sections when another one is broken."""
    sections: dict[str, Any] = {}
    for key in data:
        if key not in SettingsFile.model_fields:
            log.add((key,), unknown_key(key, list(SettingsFile.model_fields), "the sections are"))
    for name, field in SettingsFile.model_fields.items():
        if name not in data:
            if field.is_required():
                log.add((name,), "required")
            else:
                sections[name] = field.get_default(call_default_factory=True)
            continue
        try:
            sections[name] = _section_adapter(name).validate_python(data[name])
        except ValidationError as exc:
            for error in exc.errors():
                path = (name, *error["loc"])
                if error["type"] == "extra_forbidden":
                    log.add(path, unknown_key(str(path[-1]), known_keys(path[:-1]), "known keys"))
                else:
                    log.add(path, plain_message(error))
    return sections


def _check_events_interface(sections: dict[str, Any], log: ProblemLog) -> None:
    asterisk = sections.get("asterisk")
    if asterisk is not None and asterisk.events is EventsInterface.ARI and asterisk.ari is None:
        log.add(("asterisk", "ari"), "required when events is ari")


def _check_secrets(missing: list[MissingSecret], sections: dict[str, Any],
                   secrets: SecretsNeeded | None, log: ProblemLog) -> None:
    """A missing secret is an error when the command needs it; check-config (`secrets` None)
    shows the ones the daemon would not use as warnings."""
    if secrets is SecretsNeeded.NONE:
        return
    unused = _unused_parts(sections)
    for secret in missing:
        reason = unused.get(secret.part)
        if reason is None:
            log.add(secret.path, secret.message)
        elif secrets is None:
            log.add(secret.path, f"{secret.message} ({reason})", warning=True)


def _unused_parts(sections: dict[str, Any]) -> dict[KeyPath, str]:
    """The parts of the file `run` does not connect to, with why."""
    asterisk, crm = sections.get("asterisk"), sections.get("crm")
    events = asterisk.events if asterisk is not None else EventsInterface.AMI
    unused: dict[KeyPath, str] = {}
    if events is EventsInterface.ARI:
        unused[("asterisk", "ami")] = f"not needed while events is {events.value}"
    else:
        unused[("asterisk", "ari")] = f"not needed while events is {events.value}"
    adapter = crm.adapter if crm is not None else CrmAdapterKind.EMBEDDED
    if adapter is not CrmAdapterKind.BITRIX24:
        for part in (("crm", "bitrix24"), ("crm", "bitrix24", "oauth")):
            unused[part] = f"not needed while crm.adapter is {adapter.value}"
    if adapter is not CrmAdapterKind.WEBHOOK:
        unused[("crm", "webhook")] = f"not needed while crm.adapter is {adapter.value}"
    return unused


def _warn_open_peers(sections: dict[str, Any], log: ProblemLog) -> None:
    """A network of every address (0.0.0.0/0, ::/0) is allowed but said out loud: anyone who
    reaches the port may then ask for routes or read the metrics."""
    daemon = sections.get("daemon")
    if daemon is None:
        return
    for path, peers, what in (
        (("daemon", "fastagi", "allowed_peers"), daemon.fastagi.allowed_peers,
         "FastAGI is open to every host that can reach it (anyone may ask where calls go and "
         "fill its sessions): list the Asterisk servers' addresses"),
        (("daemon", "web", "metrics_allowed_peers"), daemon.web.metrics_allowed_peers,
         "/metrics is open to every host that can reach the web port: list the Prometheus servers' addresses"),
    ):
        for index, peer in enumerate(peers):
            if peer.prefixlen == 0:
                log.add((*path, index), f"{peer} allows every address: {what}", warning=True)


def _database_beside_the_file(sections: dict[str, Any], folder: Path, log: ProblemLog) -> None:
    """A relative SQLite path (`sqlite:///var/crm.sqlite3`) starts from the config file's
    folder, as `secret_file` does, whatever the current directory."""
    crm = sections.get("crm")
    if crm is None:
        return
    try:
        url = make_url(crm.embedded.database)
    except ArgumentError:
        log.add(("crm", "embedded", "database"), "not a database URL, such as sqlite:///var/crm.sqlite3")
        return
    if url.get_backend_name() == "postgresql" and not _postgresql_driver_installed():
        log.add(("crm", "embedded", "database"),
                "PostgreSQL needs the psycopg driver: pip install 'agi-daemon[postgresql]'")
        return
    daemon = sections.get("daemon")
    if url.get_backend_name() == "postgresql" and daemon is not None and daemon.pbx_id is None:
        log.add(("crm", "embedded", "database"), "a database several daemons can share: give each PBX its "
                "daemon.pbx_id, or two PBXs' calls with the same linkedid are taken for one", warning=True)
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return
    file = Path(database).expanduser()
    if file.is_absolute():
        return
    absolute = url.set(database=str((folder / file).absolute()))
    embedded = crm.embedded.model_copy(update={"database": absolute.render_as_string(hide_password=False)})
    sections["crm"] = crm.model_copy(update={"embedded": embedded})


def _postgresql_driver_installed() -> bool:
    try:
        import psycopg  # noqa: F401 - the optional dependency agi-daemon[postgresql]
    except ImportError:
        return False
    return True


def _rules(sections: dict[str, Any], log: ProblemLog) -> Rules | None:
    """The routing rules, when the sections they are made of are valid."""
    if not all(name in sections for name in ("daemon", "crm", "employees", "queue_groups", "numbers")):
        return None
    asterisk = sections.get("asterisk")
    dialing = Dialing() if asterisk is None else Dialing(endpoint_template=asterisk.endpoint_template,
                                                         trunk_template=asterisk.trunk_template)
    return build_rules(sections["daemon"].default_region, sections["crm"], sections["employees"],
                       sections["queue_groups"], sections["numbers"], dialing, log)


@cache
def _section_adapter(name: str) -> TypeAdapter[Any]:
    field = SettingsFile.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]  # built at run time
