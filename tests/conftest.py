"""Shared fixtures.

Real Asterisk (tests marked `asterisk`, helpers in tests/asterisk/):
  asterisk_root     session: the cached Debian root with Asterisk 22 (env AGI_DAEMON_ASTERISK_ROOT);
                    skips with the reason when unusable, fails when AGI_DAEMON_REQUIRE_ASTERISK=1
  asterisk_factory  session: factory(name, daemon_port=None) -> a started AsteriskSandbox,
                    stopped at the end of the session (about 0.5 s to start)
  asterisk          session: one shared sandbox whose AGI_DAEMON_URL points at a closed port;
                    a test points it at its own FastAGI server with asterisk.set_agi_port(port)
  asterisk_ami      function: a connected tests.asterisk.ami_client.TestAmi on `asterisk`; at
                    teardown it hangs up the calls it originated
  employees         function: `asterisk`, with every employee answering again after the test
  mode              function, parametrised: the daemon talks to `employees` over FastAGI+AMI
                    ("ami", dialplan/agi-daemon.conf) or Stasis+ARI ("ari", agi-daemon-stasis.conf);
                    mode.config(tmp_path, ...) writes the daemon's YAML for that mode

Real PostgreSQL (tests/postgresql_server.py; scripts/postgresql-sandbox.sh installs it):
  postgresql        session: the session's own cluster (initdb in a temp dir, 127.0.0.1, an
                    ephemeral port); skips with the reason when unusable, fails when
                    AGI_DAEMON_REQUIRE_POSTGRESQL=1
  crm_database_url  function: the embedded CRM's URL: a SQLite file in tmp_path, or a fresh
                    PostgreSQL database (at the latest migration) when the test runs on
                    "postgresql". A module (or test) marked `pytest.mark.databases("sqlite",
                    "postgresql")` runs once on each; unmarked, on SQLite only.

The whole daemon (tests/daemon_harness.py):
  crm               function: the embedded CRM on `crm_database_url`, opened; in the end-to-end
                    scenarios (tests/daemon_harness.py `scenario_crm`), what the CRM of
                    `crm_adapter` holds (tests/crm/crm_holds.py). A module (or test) marked
                    `pytest.mark.adapters("embedded", "bitrix24")` runs once per adapter: the
                    embedded CRM on each of its `databases`, bitrix24 on SQLite with the in-test portal

Remote CRMs (in-test HTTP servers on 127.0.0.1, port 0):
  portal            function: the in-test Bitrix24 portal (tests/crm/bitrix24_portal.py) with
                    alice and bob as users 11 and 12 (internal phones 101, 102); at teardown no
                    request broke the REST documentation and none hit QUERY_LIMIT_EXCEEDED
  webhook_crm       function: the in-test webhook CRM (tests/crm/webhook_crm.py)
"""
from __future__ import annotations

import asyncio
import os
import warnings

import pytest

from agi_daemon.crm.embedded import EmbeddedCrm
from tests.crm.crm_holds import running_portal
from tests.crm.webhook_crm import WebhookCrmServer
from tests.asterisk.ami_client import TestAmi
from tests.asterisk.sandbox import AsteriskSandbox, closed_port, configured_root, unavailable_reason
from tests.daemon_harness import MODE_IDS, MODES, Mode
from tests.postgresql_server import PostgresServer
from tests.postgresql_server import unavailable_reason as postgresql_unavailable


@pytest.fixture(scope="session")
def asterisk_root():
    root = configured_root()
    reason = unavailable_reason(root)
    if reason is not None:
        if os.environ.get("AGI_DAEMON_REQUIRE_ASTERISK") == "1":
            pytest.fail(f"AGI_DAEMON_REQUIRE_ASTERISK=1 but {reason}")
        pytest.skip(reason)  # no root or debootstrap here; CI sets AGI_DAEMON_REQUIRE_ASTERISK=1 and fails instead
    return root


@pytest.fixture(scope="session")
def asterisk_factory(asterisk_root):
    started: list[AsteriskSandbox] = []

    def start(name: str, daemon_port: int | None = None) -> AsteriskSandbox:
        sandbox = AsteriskSandbox(asterisk_root, name, daemon_port or closed_port())
        sandbox.start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture(scope="session")
def asterisk(asterisk_factory) -> AsteriskSandbox:
    return asterisk_factory("shared")


@pytest.fixture
async def asterisk_ami(employees):
    ami = await TestAmi.connect(employees)
    try:
        yield ami
    finally:
        await ami.hangup_originated()
        await ami.close()


# Debian's Chromium (156) now and then segfaults in its browser process (a minidump of one,
# in CI, said ptype=browser, SIGSEGV, seconds after launch): the test then fails with
# TargetClosedError before the daemon did anything. Such a test runs once more, from scratch
# (a new daemon, a new browser); any other failure, the daemon's included, is never rerun.
BROWSER_CRASHED = ["TargetClosedError"]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.flaky(reruns=1, only_rerun=BROWSER_CRASHED))


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("databases")
    adapters = metafunc.definition.get_closest_marker("adapters")
    if adapters is not None and "crm_adapter" in metafunc.fixturenames:
        # the embedded CRM on every database the test names; a remote CRM on SQLite only (the
        # daemon's store holds just its outbox and ledger there: the databases are proven apart)
        databases = marker.args if marker is not None else ("sqlite",)
        runs = [(database, "embedded") for database in databases if "embedded" in adapters.args]
        runs += [("sqlite", adapter) for adapter in adapters.args if adapter != "embedded"]
        metafunc.parametrize(("crm_database", "crm_adapter"), runs, indirect=True,
                             ids=[database if adapter == "embedded" else adapter for database, adapter in runs])
    elif marker is not None and "crm_database" in metafunc.fixturenames:
        metafunc.parametrize("crm_database", marker.args, indirect=True)


@pytest.fixture(scope="session")
def postgresql():
    reason = postgresql_unavailable()
    if reason is not None:
        if os.environ.get("AGI_DAEMON_REQUIRE_POSTGRESQL") == "1":
            pytest.fail(f"AGI_DAEMON_REQUIRE_POSTGRESQL=1 but {reason}")
        pytest.skip(reason)  # CI sets AGI_DAEMON_REQUIRE_POSTGRESQL=1 and fails instead
    server = PostgresServer.start_new()
    yield server
    server.destroy()


@pytest.fixture
def crm_database(request) -> str:
    """Which database the test's CRM is on: "sqlite" unless parametrised (see `databases`)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def crm_database_url(request, crm_database, tmp_path) -> str:
    if crm_database == "postgresql":
        server = request.getfixturevalue("postgresql")
        if not server.running:
            server.start()  # a test that stopped it and failed before starting it again
        return server.create_database()
    assert crm_database == "sqlite", crm_database
    return f"sqlite:///{tmp_path}/crm.sqlite3"


@pytest.fixture
def crm_adapter(request) -> str:
    """Which CRM adapter the scenario's daemon uses: "embedded" unless parametrised (see `adapters`)."""
    return getattr(request, "param", "embedded")


@pytest.fixture
def crm_config() -> dict[str, str]:
    """write_config's settings for the test's CRM adapter, filled in by the scenarios' `crm`
    (tests/daemon_harness.py) once its CRM runs: {} for the embedded CRM, {"bitrix24": URL}."""
    return {}


@pytest.fixture
async def crm(crm_database_url):
    """The embedded CRM the daemon under test uses; the test reads it back."""
    async with EmbeddedCrm(crm_database_url) as store:
        yield store


@pytest.fixture
async def employees(asterisk):
    """The shared sandbox; every employee answers unless the test says otherwise (reset after).
    An Asterisk whose ARI no longer answers or opens no events WebSocket
    (AsteriskSandbox.ari_answers) is restarted first, with a warning in the test report: the
    test then meets a working PBX."""
    if not await asyncio.to_thread(asterisk.ari_answers):
        warnings.warn("the shared Asterisk's ARI no longer answered or opened no events WebSocket: restarted",
                      stacklevel=1)
        await asyncio.to_thread(asterisk.restart)
    yield asterisk
    for extension in ("101", "102"):
        asterisk.set_global(f"EMPLOYEE_{extension}", "answer")
    asterisk.use_dialplan("fastagi")  # a `mode` may have switched to the Stasis variant


@pytest.fixture(params=MODES, ids=MODE_IDS)
def mode(request, employees, crm_config) -> Mode:
    """Each end-to-end scenario, once per way the daemon talks to Asterisk."""
    return Mode(request.param, employees, crm_config)


@pytest.fixture
async def portal():
    async with running_portal() as portal:
        yield portal


@pytest.fixture
async def webhook_crm():
    server = await WebhookCrmServer().start()
    try:
        yield server
    finally:
        await server.stop()
    assert server.bad_signatures == 0
