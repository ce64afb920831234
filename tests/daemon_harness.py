"""Run the whole daemon in-process against the real Asterisk sandbox, with a CRM the test reads.

    async with running_daemon(asterisk, config_path, crm) as daemon: ...

The daemon's FastAGI port is ephemeral; the sandbox's AGI_DAEMON_URL is pointed at it and the
fallback contexts are regenerated from the same YAML file, as an admin would.
"""
from __future__ import annotations

import asyncio
import contextlib
import textwrap
from pathlib import Path

import pytest

from agi_daemon.app import Daemon
from agi_daemon.crm.embedded import EmbeddedCrm
from agi_daemon.crm.registry import build_crm
from agi_daemon.remote_crm import remote_crm
from agi_daemon.settings import SettingsHolder
from tests.asterisk.ami_client import user_event
from tests.crm.crm_holds import EmbeddedHolds, PortalHolds, running_portal
from tests.fakes.fastagi import agi_call as agi_call  # for bench/, which plays the same FastAGI peer
from tests.fakes.polling import eventually

PARIS = "+33184880000"  # create / classic by default
LYON = "+33472000000"  # offer
CLIENT = "+33611223344"
UNKNOWN = "+33699887766"
BLOCKED = "+33140000000"
ALICE_MOBILE = "+33612000001"


def rang(linkedid: str, extension: str):
    """The sandbox's employee <extension> started ringing for call <linkedid>."""
    return user_event("AgiDaemonTestRing", linkedid=linkedid, extension=extension)


def call_log_said(caplog, linkedid: str, text: str, times: int = 1):
    """A probe: the daemon's call log has said `text` about call `linkedid` at least `times`
    times (a positive signal that a report was handled, even one that writes nothing). The
    test sets caplog to INFO for CALL_LOG."""
    def probe() -> bool:
        said = [r for r in caplog.records
                if r.name == CALL_LOG and linkedid in r.getMessage() and text in r.getMessage()]
        return len(said) >= times

    return probe


CALL_LOG = "agi_daemon.services.call_log"


async def logged_calls(crm, linkedid: str) -> list[dict]:
    return [c for c in await crm.list_records("calls") if c["linkedid"] == linkedid]


def write_config(
    directory: Path,
    *,
    mode: str = "classic",
    create_with: str = "contact",
    pipeline: str = "general",
    create_for: str = "incoming",
    source: str = "CALL",
    reassign: bool = True,
    responsible_ring: int = 2,
    ring: int = 2,
    deadline_ms: int = 300,
    ami: tuple[int, str, str] = (5038, "agi-daemon", "unused"),
    ari: tuple[str, str, str] | None = None,
    database: str | None = None,
    bitrix24: str | None = None,
    pbx_id: str | None = None,
) -> Path:
    """The test PBX as a YAML file in `directory`; `ami` is (port, username, secret); with
    `ari` (url, username, password) call tracking and the Stasis application use ARI;
    `database` the CRM's URL (default: a SQLite file in `directory`); `bitrix24` a portal's
    inbound webhook URL: crm.adapter bitrix24, alice and bob its users 11 and 12; `pbx_id`
    daemon.pbx_id."""
    database = database or f"sqlite:///{directory}/crm.sqlite3"
    ami_port, ami_user, ami_secret = ami
    ari_lines = ""
    ari_placeholder = ""
    if ari is not None:
        ari_url, ari_user, ari_password = ari
        ari_lines = f'\n  ari: {{url: "{ari_url}", username: {ari_user}, password: "{ari_password}", app: agi-daemon}}'
    ari_placeholder = "ARI-SETTINGS-HERE"
    text = textwrap.dedent(f"""\
        daemon:
          default_region: FR
          fastagi: {{listen: "127.0.0.1:0", allowed_peers: ["127.0.0.1"]}}
          web: {{listen: "127.0.0.1:0"}}PBX-ID-HERE
          crm_deadline_ms: {deadline_ms}
        asterisk:
          ami: {{host: 127.0.0.1, port: {ami_port}, username: {ami_user}, secret: "{ami_secret}"}}{ari_placeholder}
          events: {"ari" if ari is not None else "ami"}
          endpoint_template: "Local/{{extension}}@employees"
          trunk_template: "Local/{{number}}@trunk"
        crm:
          mode: {mode}
          simple: {{pipeline: {pipeline}, create_with: {create_with}}}
          adapter: {"bitrix24" if bitrix24 else "embedded"}
          embedded: {{database: "{database}", pool_size: 2}}BITRIX24-HERE
          exceptions: {{phones: ["+33 1 40 00 00 00"]}}
        employees:
          alice: {{name: Alice Martin, extension: "101", phones: ["+33 6 12 00 00 01"], line: "+33 1 84 88 00 00"CRM-USER-11}}
          bob: {{name: Bob Durand, extension: "102"CRM-USER-12}}
        queue_groups:
          sales: {{members: [alice, bob], strategy: in_order, ring_seconds: {ring}}}
        numbers:
          "+33 1 84 88 00 00":
            name: Paris sales line
            queue_group: sales
            crm:
              unknown_caller: create
              create_for: {create_for}
              source: {source}
              route_known_to_responsible: true
              responsible_ring_seconds: {responsible_ring}
              reassign_on_manual_transfer: {str(reassign).lower()}
          "+33 4 72 00 00 00":
            name: Lyon support line
            queue_group: sales
            crm: {{unknown_caller: offer, create_for: all, source: SUPPORT_CALL}}
        """)
    text = text.replace(ari_placeholder, ari_lines)
    portal = (f'\n  bitrix24: {{webhook_url: "{bitrix24}", pipelines: {{general: 0, b2b: 3}}}}' if bitrix24 else "")
    text = text.replace("BITRIX24-HERE", portal)
    for user in ("11", "12"):
        text = text.replace(f"CRM-USER-{user}", f', crm_user: "{user}"' if bitrix24 else "")
    text = text.replace("PBX-ID-HERE", f"\n  pbx_id: {pbx_id}" if pbx_id else "")
    path = directory / "agi-daemon.yaml"
    path.write_text(text)
    return path


@pytest.fixture(name="crm")
async def scenario_crm(crm_database_url, crm_adapter, crm_config):
    """The scenarios' `crm` (import it into the module): what the CRM of `crm_adapter` holds
    (tests/crm/crm_holds.py), read back by the test the same way whatever the adapter, and
    given to `running_daemon`. The daemon's own store is on `crm_database_url`; with bitrix24,
    the in-test portal runs and `crm_config` (hence `mode.config`) points the daemon at it."""
    async with EmbeddedCrm(crm_database_url) as store:
        if crm_adapter == "embedded":
            yield EmbeddedHolds(store)
            return
        assert crm_adapter == "bitrix24", crm_adapter
        async with running_portal() as portal:
            crm_config["bitrix24"] = portal.webhook_url
            yield PortalHolds(portal, store=store)


@contextlib.asynccontextmanager
async def running_daemon(sandbox, config: Path, crm, *, wait_for_ami: bool = True):
    """The daemon serving `config` with `crm` (a store, a fake around one, or what a CRM
    holds: `scenario_crm`); `sandbox` (or None) is pointed at it, and call tracking has
    connected (to AMI or ARI) before the body runs."""
    holder = SettingsHolder(config)
    if isinstance(crm, EmbeddedHolds):
        crm = crm.store
    elif isinstance(crm, PortalHolds):  # the remote adapter the config names, on the test's store
        settings = holder.current
        assert settings.crm.adapter.value == "bitrix24", "write the config with mode.config (crm_config)"
        crm = build_crm("bitrix24", settings.crm.embedded.database, crm.store, remote=remote_crm(settings))
        await crm.remote.open()
        try:
            async with running_daemon(sandbox, config, crm, wait_for_ami=wait_for_ami) as daemon:
                yield daemon
        finally:
            await crm.remote.close()
        return
    daemon = Daemon(holder, crm=crm)
    stop, ready = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(daemon.serve(stop, ready))
    try:
        await asyncio.wait_for(asyncio.shield(ready.wait()), 10)
        if sandbox is not None:
            sandbox.write_fallback(holder.current.rules)
            sandbox.set_agi_port(daemon.agi_port)
        if wait_for_ami and daemon.event_source is not None:
            # Asterisk's HTTP server has been seen to leave one events WebSocket upgrade unanswered
            # for the whole connect timeout (5 s) now and then, on an idle machine too (about one
            # start in 2,000): long enough for the daemon's retry to connect
            await eventually(_connected(daemon), timeout=20)
            source = daemon.event_source
            assert source.connected, f"the daemon did not connect to {source.name}: {source.last_error}"
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(serving, 20)


def _connected(daemon):
    async def probe():
        return daemon.event_source.connected

    return probe


class Mode:
    """How the daemon under test talks to the sandbox: "ami" (FastAGI routing, AMI tracking,
    dialplan/agi-daemon.conf) or "ari" (Stasis routing and ARI tracking,
    dialplan/agi-daemon-stasis.conf). The same scenario runs in both."""

    def __init__(self, name: str, sandbox, crm_config: dict[str, str] | None = None) -> None:
        self.name = name
        self.sandbox = sandbox
        self.crm_config = crm_config if crm_config is not None else {}  # write_config's CRM adapter settings
        if sandbox is not None:
            sandbox.use_dialplan("stasis" if name == "ari" else "fastagi")

    @property
    def link_port(self) -> int:
        """The sandbox port call tracking connects to: AMI's, or HTTP's for ARI."""
        return self.sandbox.http_port if self.name == "ari" else self.sandbox.ami_port

    def links(self) -> dict[str, tuple]:
        """write_config's `ami` (and, in ARI mode, `ari`) for the sandbox's daemon users."""
        links: dict[str, tuple] = {"ami": self.sandbox.daemon_ami}
        if self.name == "ari":
            links["ari"] = self.sandbox.daemon_ari
        return links

    def config(self, directory: Path, *, link_port: int | None = None, **settings) -> Path:
        """write_config for this mode, logging in with the sandbox's daemon users, with the
        test's CRM adapter (`crm_config`); `link_port` replaces `link_port` (a proxy in front
        of it, say)."""
        port, user, secret = self.sandbox.daemon_ami
        url, ari_user, password = self.sandbox.daemon_ari
        if link_port is not None and self.name == "ari":
            url = f"http://127.0.0.1:{link_port}"
        elif link_port is not None:
            port = link_port
        for key, value in self.crm_config.items():
            settings.setdefault(key, value)
        settings.setdefault("ami", (port, user, secret))
        if self.name == "ari":
            settings.setdefault("ari", (url, ari_user, password))
        return write_config(directory, **settings)

    def __repr__(self) -> str:
        return f"Mode({self.name})"


MODES = ("ami", "ari")
MODE_IDS = ("fastagi+ami", "stasis+ari")
