"""The config file's contract (config/agi-daemon.yaml documents it): every key, its type, default and allowed values.

Phone numbers stay as written here; `rules.py` normalises them once `daemon.default_region`
is known, and checks the names that refer to other keys (members, queue groups, lines).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from string import Formatter
from typing import Annotated, Callable

import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, SecretStr, StringConstraints

from agi_daemon.core.call_cards import CardPolicy
from agi_daemon.core.model import (
    CreateFor,
    CreateWith,
    CrmMode,
    CrmPolicy,
    Dialing,
    LineCrm,
    QueueGroup,
    QueueStrategy,
    UnknownCaller,
    embedded_database,
)

_LINE_CRM = LineCrm()
_CRM_POLICY = CrmPolicy()
_DIALING = Dialing()


class Section(BaseModel):
    """A mapping of the file: unknown keys are mistakes, numbers are accepted as text."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


# ---- value types ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Listen:
    """An address a server listens on, written "host:port" ("[::1]:4573" for IPv6)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def _listen(value: object) -> Listen:
    if isinstance(value, Listen):
        return value
    text = str(value)
    problem = "must be host:port, e.g. 127.0.0.1:4573 or [::1]:4573"
    host, _, port = text.rpartition(":")
    # Port 0 asks the system for any free port (tests run several daemons side by side).
    if not host or not port.isascii() or not port.isdigit() or len(port) > 5 or not 0 <= int(port) < 65536:
        raise ValueError(problem)
    if host.startswith("[") or host.endswith("]") or ":" in host:  # IPv6: in brackets, and only then
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else None
        if inner is None or not _is_ip(inner, version=6):
            raise ValueError(f"{problem} (an IPv6 address goes in brackets)")
        return Listen(inner, int(port))
    if not (_is_ip(host, version=4) or _HOST_NAME.fullmatch(host)):
        raise ValueError(f"{problem}: {host!r} is not an IP address or host name")
    return Listen(host, int(port))


def _is_ip(text: str, *, version: int) -> bool:
    try:
        return ip_address(text).version == version
    except ValueError:
        return False


IpNetwork = IPv4Network | IPv6Network


def _network(value: object) -> IpNetwork:
    if isinstance(value, (IPv4Network, IPv6Network)):
        return value
    try:
        return ip_network(str(value), strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or network: {value}") from None


def _region(value: str) -> str:
    region = value.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region: {value} (use a two-letter country code such as FR)")
    return region


def _template(field: str) -> Callable[[str], str]:
    """Only the plain `{field}` (any number of times): a format spec (`{extension:03d}`,
    `{extension:>50000000}`) or a conversion (`{number!r}`) would fail or stall every call,
    and the dialplan's fallback, which substitutes the plain field, could not follow it."""
    message = (f"must contain {{{field}}} and no other {{...}} field, without format spec or "
               f"conversion (write {{{{ and }}}} for literal braces)")

    def check(template: str) -> str:
        try:
            parts = [(name, spec, conversion) for _, name, spec, conversion in Formatter().parse(template)
                     if name is not None]
        except ValueError:
            parts = []
        if not parts or any(part != (field, "", None) for part in parts):
            raise ValueError(message)
        return template

    return check


def _url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _extension(value: str) -> str:
    if not re.fullmatch(r"[0-9A-Za-z*#+]+", value):
        raise ValueError("must be an extension such as 101 (digits, letters, * or #)")
    return value


# Asterisk registers a Stasis application of at most 73 characters (AST_MAX_CONTEXT less the
# "stasis-" prefix) and reads a comma as a second application.
STASIS_APP_MAX_LENGTH = 73


def _stasis_app(value: str) -> str:
    """A name Asterisk registers as one application. A name it refuses makes the events
    WebSocket fail at every try, and Asterisk 22 up to 22.10 leaks an HTTP session on each
    refusal (asterisk/asterisk#2020): the retries would use up its HTTP sessions."""
    if not re.fullmatch(rf"[A-Za-z0-9_.-]{{1,{STASIS_APP_MAX_LENGTH}}}", value):
        raise ValueError(f"must be a Stasis application name: 1 to {STASIS_APP_MAX_LENGTH} letters, digits, "
                         f"'-', '_' or '.' (Asterisk refuses a longer name, and reads a comma as a second application)")
    return value


def _email(value: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
        raise ValueError(f"not an e-mail address: {value}")
    return value


def _members(members: tuple[str, ...]) -> tuple[str, ...]:
    if not members:
        raise ValueError("a queue group needs at least one member")
    return members


Text = Annotated[str, Field(min_length=1)]
Name = Annotated[str, Field(min_length=1, max_length=255)]  # as long as the CRM's name column
Label = Annotated[str, Field(min_length=1, max_length=64)]  # as long as the CRM's source and pipeline columns
Count = Annotated[int, Field(gt=0)]
Port = Annotated[int, Field(gt=0, le=65535)]
ListenAddress = Annotated[Listen, PlainValidator(_listen)]
Peer = Annotated[IpNetwork, PlainValidator(_network)]


class EventsInterface(StrEnum):
    """Which Asterisk interface call tracking listens to."""

    AMI = "ami"
    ARI = "ari"


class CrmAdapterKind(StrEnum):
    EMBEDDED = "embedded"  # the daemon's own SQL store
    BITRIX24 = "bitrix24"
    WEBHOOK = "webhook"


# ---- daemon --------------------------------------------------------------------------------

class FastAgiSettings(Section):
    """The FastAGI server the dialplan's AGI() calls reach, and its limits per connection."""

    listen: ListenAddress = Listen("127.0.0.1", 4573)
    allowed_peers: tuple[Peer, ...] = (IPv4Network("127.0.0.1/32"),)
    max_header_bytes: Count = 16384
    header_timeout_ms: Count = 2000
    max_sessions: Count = 1000


class WebSettings(Section):
    """The agents' call window, CRM pages, /metrics and /healthz."""

    listen: ListenAddress = Listen("127.0.0.1", 8080)
    # Who may scrape /metrics without a session (Prometheus): loopback only by default.
    metrics_allowed_peers: tuple[Peer, ...] = (IPv4Network("127.0.0.1/32"), IPv6Network("::1/128"))
    # The reverse proxies in front of the pages (README, hardening): a request from one of them
    # is from the address its X-Forwarded-For names, for the login's lock and /metrics' peers.
    trusted_proxies: tuple[Peer, ...] = (IPv4Network("127.0.0.1/32"), IPv6Network("::1/128"))


class DaemonSettings(Section):
    default_region: Annotated[str, AfterValidator(_region)]
    fastagi: FastAgiSettings = FastAgiSettings()
    web: WebSettings = WebSettings()
    crm_deadline_ms: Count = 300  # routing never waits longer than this on a CRM lookup
    # This PBX's name in a store several daemons share: its calls' linkedids are stored as
    # "<pbx_id>:<linkedid>", so two Asterisks numbering calls alike never collide.
    pbx_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")] | None = None


# ---- asterisk ------------------------------------------------------------------------------

class AmiSettings(Section):
    host: Text = "127.0.0.1"
    port: Port = 5038
    username: Text = "agi-daemon"
    secret: SecretStr


class AriSettings(Section):
    url: Annotated[str, AfterValidator(_url)] = "http://127.0.0.1:8088"
    username: Text = "agi-daemon"
    password: SecretStr
    app: Annotated[str, AfterValidator(_stasis_app)] = "agi-daemon"  # the Stasis application name used in the dialplan


class AsteriskSettings(Section):
    ami: AmiSettings
    ari: AriSettings | None = None  # required when events is ari
    events: EventsInterface = EventsInterface.AMI
    endpoint_template: Annotated[str, AfterValidator(_template("extension"))] = _DIALING.endpoint_template
    trunk_template: Annotated[str, AfterValidator(_template("number"))] = _DIALING.trunk_template


# ---- crm -----------------------------------------------------------------------------------

class SimpleModeSettings(Section):
    pipeline: Label = _CRM_POLICY.pipeline
    create_with: CreateWith = _CRM_POLICY.create_with


def _database(value: str) -> str:
    embedded_database(value)  # ValueError: pydantic's message for the key
    return value


class EmbeddedCrmSettings(Section):
    database: Annotated[str, Field(min_length=1), AfterValidator(_database)] = "sqlite:///var/crm.sqlite3"
    # worker threads reading the database, one connection each (plus one for the writer)
    pool_size: Annotated[int, Field(gt=0, le=64)] = 4


class OutboxSettings(Section):
    """Writes waiting for the CRM: a delivery still failing after `max_attempts` attempts, or
    `dead_letter_after_hours` after it was asked, becomes a dead letter (`agi-daemon outbox`)."""

    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 20
    dead_letter_after_hours: Annotated[float, Field(gt=0, le=24 * 365)] = 24


class ExceptionList(Section):
    """Numbers and e-mails never sent to the CRM (R7); phones as written."""

    phones: tuple[str, ...] = ()
    emails: tuple[Annotated[str, AfterValidator(_email)], ...] = ()


class RateSettings(Section):
    """The portal's leaky bucket: requests per second, and how many may come at once."""

    per_second: Annotated[float, Field(gt=0)] = 2.0  # Enterprise plans: 5
    burst: Count = 50  # Enterprise plans: 250


class Bitrix24OAuthSettings(Section):
    """A local application of the portal: its client id and secret, and the file holding its
    tokens (rewritten at each refresh)."""

    portal: Annotated[str, AfterValidator(_url)]
    client_id: Text
    client_secret: SecretStr
    tokens_file: Text
    token_url: Annotated[str, AfterValidator(_url)] = "https://oauth.bitrix.info/oauth/token/"


class Bitrix24Settings(Section):
    """crm.adapter bitrix24: one of webhook_url (or webhook_url_file) and oauth."""

    webhook_url: SecretStr | None = None  # https://PORTAL/rest/USER_ID/SECRET/ (its shape: settings/remote_crm.py)
    oauth: Bitrix24OAuthSettings | None = None
    rate: RateSettings = RateSettings()
    card: CardPolicy = CardPolicy.RINGING
    pipelines: dict[str, Annotated[int, Field(ge=0)]] = {"general": 0}  # crm.simple.pipeline -> CATEGORY_ID
    timeout_ms: Count = 10000  # one REST request, writes (lookups use daemon.crm_deadline_ms)


class WebhookCrmSettings(Section):
    """crm.adapter webhook: signed JSON events POSTed to `url`."""

    url: Annotated[str, AfterValidator(_url)]
    secret: SecretStr  # the HMAC-SHA256 key
    lookup_url: Annotated[str, AfterValidator(_url)] | None = None  # GET ?phone=E164
    timeout_ms: Count = 10000


class CrmSettings(Section):
    mode: CrmMode = _CRM_POLICY.mode
    simple: SimpleModeSettings = SimpleModeSettings()
    adapter: CrmAdapterKind = CrmAdapterKind.EMBEDDED
    embedded: EmbeddedCrmSettings = EmbeddedCrmSettings()
    outbox: OutboxSettings = OutboxSettings()
    exceptions: ExceptionList = ExceptionList()
    bitrix24: Bitrix24Settings | None = None  # required when adapter is bitrix24
    webhook: WebhookCrmSettings | None = None  # required when adapter is webhook


# ---- employees, queue groups, numbers ------------------------------------------------------

class EmployeeEntry(Section):
    name: Name
    extension: Annotated[str, AfterValidator(_extension)] | None = None
    phones: tuple[str, ...] = ()  # as written; calls from/to them are never recorded (R8)
    line: str | None = None  # the number used for this employee's outgoing calls
    admin: bool = False  # the web pages: an admin sees every call, the CRM rules, the simulator
    crm_user: Text | None = None  # the employee's user id in the remote CRM (Bitrix24: else matched by extension)


class QueueGroupEntry(Section):
    members: Annotated[tuple[str, ...], AfterValidator(_members)]
    strategy: QueueStrategy = QueueGroup.strategy  # the core's defaults
    ring_seconds: Count = QueueGroup.ring_seconds


class LineCrmEntry(Section):
    unknown_caller: UnknownCaller = _LINE_CRM.unknown_caller
    create_for: CreateFor = _LINE_CRM.create_for
    source: Label = _LINE_CRM.source
    route_known_to_responsible: bool = _LINE_CRM.route_known_to_responsible
    responsible_ring_seconds: Count = _LINE_CRM.responsible_ring_seconds
    reassign_on_manual_transfer: bool = _LINE_CRM.reassign_on_manual_transfer


class NumberEntry(Section):
    name: Name
    queue_group: Name
    crm: LineCrmEntry = LineCrmEntry()


def _some_lines(numbers: dict[str, NumberEntry]) -> dict[str, NumberEntry]:
    if not numbers:
        raise ValueError("at least one line is needed")
    return numbers


class SettingsFile(Section):
    """The whole file, top-level section by section."""

    daemon: DaemonSettings
    asterisk: AsteriskSettings
    crm: CrmSettings = CrmSettings()
    employees: dict[str, EmployeeEntry]
    queue_groups: dict[str, QueueGroupEntry]
    numbers: Annotated[dict[str, NumberEntry], AfterValidator(_some_lines)]
