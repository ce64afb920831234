"""The admin's YAML config file: loading, `${ENV}` and `*_file` secrets, checks, reload.

    settings = load_settings("config/agi-daemon.yaml")   # raises ConfigError
    settings.rules.lines["+33184880000"].queue_group      # "sales"
"""
from .errors import ConfigError, Problem
from .holder import SettingsHolder
from .loader import SecretsNeeded, Settings, check_config, load_settings
from .schema import (
    AmiSettings,
    AriSettings,
    AsteriskSettings,
    CrmAdapterKind,
    CrmSettings,
    DaemonSettings,
    EventsInterface,
    FastAgiSettings,
    Listen,
    WebSettings,
)

__all__ = [
    "AmiSettings",
    "AriSettings",
    "AsteriskSettings",
    "ConfigError",
    "CrmAdapterKind",
    "CrmSettings",
    "DaemonSettings",
    "EventsInterface",
    "FastAgiSettings",
    "Listen",
    "Problem",
    "SecretsNeeded",
    "Settings",
    "SettingsHolder",
    "WebSettings",
    "check_config",
    "load_settings",
]
