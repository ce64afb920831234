"""The config file in, `Settings` out, or every problem found in it (`FILE:LINE: key.path: message`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Mapping

from pydantic import TypeAdapter, ValidationError

from agi_daemon.core.model import Dialing, Rules

from .errors import ConfigError, Problem, ProblemLog
from .messages import plain_message
from .rules import build_rules
from .schema import AsteriskSettings, CrmAdapterKind, CrmSettings, DaemonSettings, EventsInterface, SettingsFile
from .secrets import resolve_secrets
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


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check the config file; `environ` (default: the process environment) resolves
    `${NAME}` references. Raises ConfigError listing every problem, by line."""
    settings, problems = _load(Path(path), os.environ if environ is None else environ)
    if settings is None:
        raise ConfigError(problems)
    return settings


def check_config(path: str | Path, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem in the config file, by line; empty when the daemon can run with it."""
    return _load(Path(path), os.environ if environ is None else environ)[1]


def _load(path: Path, environ: Mapping[str, str]) -> tuple[Settings | None, list[Problem]]:
    lines = KeyLines()
    log = ProblemLog(str(path), lines.line_of)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.add_at(1, "(file)", f"cannot read the config file: {reason}")
        return None, log.sorted()
    data = load_yaml(text, lines, log)
    if data is None:  # not YAML: nothing more can be said
        return None, log.sorted()
    if not isinstance(data, dict):
        log.add_at(1, "(top)", "the file must be a mapping of sections (daemon, asterisk, crm, ...)")
        return None, log.sorted()
    data = resolve_secrets(data, environ, path.parent, lines, log)
    sections = _valid_sections(data, log)
    _check_events_interface(sections, log)
    _check_available(sections, log)
    rules = _rules(sections, log)
    if rules is None or log.problems:
        return None, log.sorted()
    return Settings(path, sections["daemon"], sections["asterisk"], sections["crm"], rules), []


def _valid_sections(data: dict[str, Any], log: ProblemLog) -> dict[str, Any]:
    """Each top-level section validated on its own, so that the cross-reference checks still
    run on the valid sections when another one is broken."""
    sections: dict[str, Any] = {}
    for key in data:
        if key not in SettingsFile.model_fields:
            log.add((key,), "unknown key")
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
                log.add((name, *error["loc"]), plain_message(error))
    return sections


def _check_events_interface(sections: dict[str, Any], log: ProblemLog) -> None:
    asterisk = sections.get("asterisk")
    if asterisk is not None and asterisk.events is EventsInterface.ARI and asterisk.ari is None:
        log.add(("asterisk", "ari"), "required when events is ari")


def _check_available(sections: dict[str, Any], log: ProblemLog) -> None:
    """Values the contract names but this version cannot run yet: refused here, so that
    check-config tells the admin before `run` would."""
    crm = sections.get("crm")
    if crm is not None and crm.adapter is not CrmAdapterKind.EMBEDDED:
        log.add(("crm", "adapter"), f"{crm.adapter.value} is not available in this version: use embedded")


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
