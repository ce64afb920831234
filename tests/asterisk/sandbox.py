"""A real Asterisk 22 for tests: a private config set in the cached Debian root, run in a chroot.

    sandbox = AsteriskSandbox(root, "dialplan", daemon_port=4573)
    sandbox.start()                     # ~0.5 s; raises AsteriskSandboxError with the log tail
    sandbox.set_global("EMPLOYEE_101", "noanswer")
    sandbox.write_fallback(rules)       # regenerate agi-daemon-fallback.conf + dialplan reload
    sandbox.stop()

Every file lives in ROOT/run/agi-test-<pid>-<name>/ (etc, run, log, spool, lib), so several
sandboxes can run side by side and nothing outside the cached root is written. Asterisk listens
on 127.0.0.1 only: AMI (`ami_port`, user `ami_username`/`ami_secret`, read/write all) and HTTP
for ARI (`http_port`, user `ari_username`/`ari_password`). Nothing binds SIP/IAX ports. The
daemon logs in with the project's own least-privilege users (config/asterisk/
manager-agi-daemon.conf and ari-agi-daemon.conf, loaded as they are): `daemon_ami`, `daemon_ari`.

extensions.conf includes one variant of the project's dialplan (every file of dialplan/ is
copied): "fastagi" (agi-daemon.conf, the default) or "stasis" (agi-daemon-stasis.conf);
`use_dialplan(variant)` switches and reloads. `restart()` restarts Asterisk on the same ports.

The test dialplan around the project's `dialplan/agi-daemon.conf`:
  [employees]       Local/<ext>@employees: UserEvent AgiDaemonTestRing (Extension), then
                    global EMPLOYEE_<ext> = answer (default) | noanswer | busy | deskphone
                    (Dial(Local/<ext>@desk-phones), which answers)
  [trunk]           Local/<number>@trunk: UserEvent AgiDaemonTestTrunk (Number), answers
  [phones]          an admin's own outgoing dialplan: Dial(Local/<number>@trunk), no daemon
  [originate-caller] the originating side of test calls: Answer, Wait(120)
A UserEvent carries the channel's own headers, Linkedid included (a "Linkedid:" field in the
body would duplicate that header: panoramisk then gives a list), so filter on event["linkedid"].
The sync helpers here (set_global, reload_dialplan, command) open a short AMI session each, so
they work from any thread or event loop; tests/asterisk/ami_client.py is the async client.
"""
from __future__ import annotations

import base64
import fnmatch
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from agi_daemon.asterisk.fallback import render_fallback
from agi_daemon.core.model import Rules
from tests.fakes.rules import NO_RULES

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROJECT_DIALPLAN = PROJECT_DIR / "dialplan" / "agi-daemon.conf"
# Every file of dialplan/ is copied; extensions.conf includes one of the two variants.
DIALPLAN_VARIANTS = {"fastagi": "agi-daemon.conf", "stasis": "agi-daemon-stasis.conf"}
MODULE_DIR = "usr/lib/x86_64-linux-gnu/asterisk/modules"
FALLBACK_FILE = "agi-daemon-fallback.conf"
# The least-privilege AMI user the README tells admins to create; the daemon logs in as it.
DAEMON_AMI_USER = PROJECT_DIR / "config" / "asterisk" / "manager-agi-daemon.conf"
# ... and the ARI user (Stasis mode), with the [general] settings it needs.
DAEMON_ARI_USER = PROJECT_DIR / "config" / "asterisk" / "ari-agi-daemon.conf"

# Modules that bind network ports, talk to hardware or databases, or just slow the start down.
# Everything else autoloads (dialplan apps and functions, AGI, AMI, ARI/Stasis, bridging).
NOLOAD_PATTERNS = (
    "chan_pjsip.so", "res_pjsip*.so", "res_pjproject.so", "func_pjsip_*.so",
    "chan_iax2.so", "chan_unistim.so", "chan_motif.so", "res_xmpp.so", "chan_console.so",
    "chan_audiosocket.so", "res_audiosocket.so", "app_audiosocket.so",
    "chan_websocket.so", "res_aeap.so", "res_speech_aeap.so", "func_aes.so", "app_amd.so",
    "res_rtp_asterisk.so", "chan_rtp.so", "res_stasis_broadcast.so", "app_stasis_broadcast.so",
    "pbx_dundi.so", "pbx_lua.so", "pbx_ael.so", "res_ael_share.so", "pbx_realtime.so",
    "res_config_*.so", "res_odbc*.so", "func_odbc.so", "res_realtime.so",
    "cdr_*.so", "cel_*.so", "res_hep*.so", "res_snmp.so", "res_calendar*.so",
    "res_phoneprov.so", "res_prometheus.so", "res_statsd.so", "res_stun_monitor.so",
    "res_smdi.so", "res_fax*.so", "app_voicemail*.so", "app_minivm.so", "app_festival.so",
    "app_jack.so", "app_sms.so", "app_queue.so", "app_agent_pool.so", "app_confbridge.so",
    "app_sla.so", "res_parking.so", "res_rtp_multicast.so", "res_geolocation.so",
    "res_stir_shaken.so", "res_resolver_unbound.so", "res_http_media_cache.so",
    "res_curl.so", "func_curl.so", "res_mwi_devstate.so", "res_crypto.so", "res_srtp.so",
    "res_security_log.so", "app_alarmreceiver.so", "app_adsiprog.so", "app_getcpeid.so",
    "res_adsi.so", "app_dictate.so", "app_directory.so", "app_followme.so", "app_page.so",
)


DEFAULT_ROOT = "/var/cache/agi-daemon/asterisk-root"
ROOT_MARKER = ".agi-daemon-asterisk-root"  # written by scripts/asterisk-sandbox.sh when complete


class AsteriskSandboxError(RuntimeError):
    pass


def configured_root() -> Path:
    return Path(os.environ.get("AGI_DAEMON_ASTERISK_ROOT") or DEFAULT_ROOT)


def unavailable_reason(root: Path) -> str | None:
    """Why the real-Asterisk tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "the Asterisk sandbox needs root (chroot and a mount namespace)"
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            return f"the Asterisk sandbox needs `{tool}`, not found"
    if not (root / "usr/sbin/asterisk").exists() or not (root / ROOT_MARKER).exists():
        return (f"no complete Asterisk root at {root}: run "
                f"`bash scripts/asterisk-sandbox.sh {root}` (or `make sandbox`)")
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_reserved: socket.socket | None = None


def closed_port() -> int:
    """A local port where connections are refused (for "the daemon is down").

    The port stays bound, without listen(), for the whole test process, so no server started
    later can get it by chance."""
    global _reserved
    if _reserved is None:
        _reserved = socket.socket()
        _reserved.bind(("127.0.0.1", 0))
    return _reserved.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, so no Asterisk outlives
    a killed pytest (the mount namespace, and its mounts, go with it)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class AsteriskSandbox:
    ami_username = "agi-test"
    ami_secret = "agi-test-secret"
    daemon_ami_username = "agi-daemon"
    daemon_ami_secret = "agi-daemon-test-secret"
    daemon_ari_username = "agi-daemon"
    daemon_ari_password = "agi-daemon-ari-test-secret"
    ari_username = "agi-test"
    ari_password = "agi-test-secret"
    atxfer_code = "*2"
    blindxfer_code = "#1"

    def __init__(self, root: str | os.PathLike, name: str, daemon_port: int,
                 *, start_timeout: float = 30.0) -> None:
        self.root = Path(root)
        self.name = name
        self.daemon_port = daemon_port
        self.start_timeout = start_timeout
        self.inside = f"/run/agi-test-{os.getpid()}-{name}"  # path seen from inside the chroot
        self.dir = self.root / self.inside.lstrip("/")  # the same path from the host
        self.etc = self.dir / "etc"
        self.log_path = self.dir / "asterisk.out"
        self.ami_port = 0
        self.http_port = 0
        self.process: subprocess.Popen | None = None
        self.dialplan_variant = "fastagi"
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ life cycle

    @property
    def agi_url(self) -> str:
        return f"agi://127.0.0.1:{self.daemon_port}"

    @property
    def ari_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def kill_and_restart(self, rules: Rules) -> None:
        """kill -9 Asterisk (its calls vanish: no hangup handler runs), then start it again
        on the same ports, with the same dialplan and `rules`' fallback."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
        self.write_configs()  # AGI_DAEMON_URL from daemon_port, as set_agi_port left it
        self.write_fallback(rules, reload=False)
        self.start(keep_ports=True)

    def start(self, *, keep_ports: bool = False) -> "AsteriskSandbox":
        """Start Asterisk; `keep_ports` restarts it on the ports it had (a restart while
        clients are connected, which must find it again where it was)."""
        if not (self.root / "usr/sbin/asterisk").exists():
            raise AsteriskSandboxError(f"no Asterisk in {self.root}: run scripts/asterisk-sandbox.sh")
        if not keep_ports:
            self._remove_stale_run_dirs()
            self.ami_port, self.http_port = free_port(), free_port()
            self.write_configs()
        started = time.monotonic()
        script = (
            f"mount -t proc proc '{self.root}/proc' && mount --bind /dev '{self.root}/dev' && "
            f"exec chroot '{self.root}' /usr/sbin/asterisk -f -n -C '{self.inside}/etc/asterisk.conf'"
        )
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log.close()
        try:
            self._wait_booted(started + self.start_timeout)
        except BaseException:
            self.stop(keep_files=True)
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def ari_answers(self, timeout: float = 2.0) -> bool:
        """Whether Asterisk's ARI answers a REST request and opens an events WebSocket, each
        within `timeout` seconds.

        Asterisk 22.10 can deadlock its ARI when the events WebSocket of an application
        subscribed to device states closes while one is being sent to it
        (asterisk/asterisk#2170): REST still answers, every later events WebSocket hangs, and
        the clients' abandoned connections pile up in CLOSE-WAIT. The daemon no longer
        subscribes to device states; the probe still looks for it, so that a test never meets
        a wedged PBX left by another."""
        token = base64.b64encode(f"{self.ari_username}:{self.ari_password}".encode()).decode()
        request = urllib.request.Request(f"{self.ari_url}/ari/asterisk/info", headers={"Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if response.status != 200:
                    return False
            return self._events_websocket_opens(token, timeout)
        except (OSError, urllib.error.URLError):
            return False

    def _events_websocket_opens(self, token: str, timeout: float) -> bool:
        """The handshake of an events WebSocket for an application subscribed to nothing
        (`101 Switching Protocols`), then the connection closed at once."""
        key = base64.b64encode(os.urandom(16)).decode()
        handshake = (f"GET /ari/events?app=agi-test-probe HTTP/1.1\r\nHost: 127.0.0.1:{self.http_port}\r\n"
                     f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     f"Sec-WebSocket-Version: 13\r\nAuthorization: Basic {token}\r\n\r\n")
        status = b""
        with socket.create_connection(("127.0.0.1", self.http_port), timeout=timeout) as connection:
            connection.sendall(handshake.encode())
            while b"\r\n" not in status and (received := connection.recv(64)):
                status += received
        return status.startswith(b"HTTP/1.1 101")

    def restart(self) -> None:
        """Stop Asterisk and start it again with the same files and ports, as after an admin's
        `core restart now`: channels and run-time globals are gone; extensions.conf is written
        again so that [globals] has the current AGI_DAEMON_URL, as an admin's file would."""
        self.stop(keep_files=True)
        (self.etc / "extensions.conf").write_text(self._extensions_conf())
        self.start(keep_ports=True)

    def stop(self, *, keep_files: bool | None = None, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                self.command("core stop now", timeout=3.0)
            except (OSError, AsteriskSandboxError):
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if keep_files is None:
            keep_files = bool(os.environ.get("AGI_DAEMON_KEEP_SANDBOX"))
        if not keep_files:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "AsteriskSandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        messages = self.dir / "log" / "full"
        if messages.exists():
            text += "\n--- log/full ---\n" + messages.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _wait_booted(self, deadline: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise AsteriskSandboxError(
                    f"asterisk exited with {self.process and self.process.returncode}:\n{self.log_tail()}")
            try:
                reply = self.action({"Action": "CoreStatus"}, timeout=2.0)
                if reply.get("Response") == "Success":
                    self.command("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                    return
            except (OSError, AsteriskSandboxError) as exc:
                last_error = exc
            time.sleep(0.05)
        raise AsteriskSandboxError(
            f"Asterisk AMI not ready after {self.start_timeout} s ({last_error}):\n{self.log_tail()}")

    def _remove_stale_run_dirs(self) -> None:
        base = self.root / "run"
        for path in base.glob("agi-test-*"):
            pid = path.name.split("-")[2]
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(path, ignore_errors=True)
        if self.dir.exists():
            shutil.rmtree(self.dir)

    # ------------------------------------------------------------------ AMI (sync, one session per call)

    def action(self, fields: dict[str, str], *, timeout: float = 5.0) -> dict[str, str]:
        """Log in, send one action, return its first response as a dict, log off."""
        with socket.create_connection(("127.0.0.1", self.ami_port), timeout=timeout) as sock:
            reader = sock.makefile("rb")
            reader.readline()  # "Asterisk Call Manager/x.y.z"
            login = self._exchange(sock, reader, {
                "Action": "Login", "Username": self.ami_username, "Secret": self.ami_secret,
                "Events": "off", "ActionID": "login"})
            if login.get("Response") != "Success":
                raise AsteriskSandboxError(f"AMI login refused: {login}")
            reply = self._exchange(sock, reader, dict(fields, ActionID="sandbox"))
            try:
                sock.sendall(b"Action: Logoff\r\n\r\n")
            except OSError:
                pass
            return reply

    @staticmethod
    def _exchange(sock: socket.socket, reader, fields: dict[str, str]) -> dict[str, str]:
        sock.sendall("".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode() + b"\r\n")
        action_id = fields.get("ActionID")
        while True:
            message: dict[str, str] = {}
            output: list[str] = []
            while True:
                line = reader.readline()
                if not line:
                    raise AsteriskSandboxError("AMI connection closed")
                text = line.decode(errors="replace").rstrip("\r\n")
                if not text:
                    break
                key, sep, value = text.partition(": ")
                if key == "Output" and sep:
                    output.append(value)
                elif sep:
                    message[key] = value
            if output:
                message["Output"] = "\n".join(output)
            if message.get("ActionID") == action_id and "Response" in message:
                return message

    def command(self, cli: str, *, timeout: float = 5.0) -> str:
        reply = self.action({"Action": "Command", "Command": cli}, timeout=timeout)
        if reply.get("Response") != "Success":
            raise AsteriskSandboxError(f"CLI {cli!r} failed: {reply}")
        return reply.get("Output", "")

    def set_global(self, name: str, value: str) -> None:
        reply = self.action({"Action": "Setvar", "Variable": name, "Value": value})
        if reply.get("Response") != "Success":
            raise AsteriskSandboxError(f"Setvar {name} failed: {reply}")

    def get_global(self, name: str) -> str:
        reply = self.action({"Action": "Getvar", "Variable": name})
        return reply.get("Value", "")

    @property
    def daemon_ami(self) -> tuple[int, str, str]:
        """(port, username, secret) of the daemon's least-privilege AMI user."""
        return self.ami_port, self.daemon_ami_username, self.daemon_ami_secret

    @property
    def daemon_ari(self) -> tuple[str, str, str]:
        """(url, username, password) of the daemon's ARI user (config/asterisk/ari-agi-daemon.conf)."""
        return self.ari_url, self.daemon_ari_username, self.daemon_ari_password

    def use_dialplan(self, variant: str) -> None:
        """Include dialplan/agi-daemon.conf ("fastagi") or dialplan/agi-daemon-stasis.conf
        ("stasis") from extensions.conf, as an admin would, and reload the dialplan."""
        if variant not in DIALPLAN_VARIANTS:
            raise ValueError(f"unknown dialplan variant {variant!r}")
        if variant != self.dialplan_variant:
            self.dialplan_variant = variant
            (self.etc / "extensions.conf").write_text(self._extensions_conf())
            self.reload_dialplan()

    def set_agi_port(self, port: int) -> None:
        """Point the dialplan's AGI_DAEMON_URL global at another FastAGI port."""
        self.daemon_port = port
        self.set_global("AGI_DAEMON_URL", self.agi_url)

    def reload_dialplan(self) -> None:
        self.command("dialplan reload")

    def write_fallback(self, rules: Rules, *, reload: bool = True) -> None:
        (self.etc / FALLBACK_FILE).write_text(render_fallback(rules))
        if reload:
            self.reload_dialplan()

    def copy_project_dialplan(self, *, reload: bool = True) -> None:
        for path in PROJECT_DIALPLAN.parent.glob("*.conf"):
            shutil.copy(path, self.etc / path.name)
        if reload:
            self.reload_dialplan()

    # ------------------------------------------------------------------ configs

    def write_configs(self) -> None:
        for sub in ("etc", "run", "log", "spool", "lib", "cache", "keys"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        files = {
            "asterisk.conf": self._asterisk_conf(),
            "modules.conf": self._modules_conf(),
            "logger.conf": LOGGER_CONF,
            "manager.conf": self._manager_conf(),
            "http.conf": self._http_conf(),
            "ari.conf": self._ari_conf(),
            "features.conf": self._features_conf(),
            "extensions.conf": self._extensions_conf(),
        }
        files.update(QUIET_CONFS)
        indications = self.root / "etc/asterisk/indications.conf"
        if indications.exists():
            files["indications.conf"] = indications.read_text()
        for name, text in files.items():
            (self.etc / name).write_text(text)
        self.copy_project_dialplan(reload=False)
        self.write_fallback(NO_RULES, reload=False)

    def _asterisk_conf(self) -> str:
        d = self.inside
        return f"""[directories]
astetcdir => {d}/etc
astmoddir => /{MODULE_DIR}
astvarlibdir => /var/lib/asterisk
astdbdir => {d}/lib
astkeydir => {d}/keys
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => {d}/spool
astrundir => {d}/run
astlogdir => {d}/log
astcachedir => {d}/cache
astsbindir => /usr/sbin

[options]
verbose = 3
debug = 0
nofork = yes
highpriority = no
transmit_silence = no
hideconnect = yes
documentation_language = en_US
"""

    def _modules_conf(self) -> str:
        available = sorted(p.name for p in (self.root / MODULE_DIR).glob("*.so"))
        noload = [m for m in available if any(fnmatch.fnmatch(m, p) for p in NOLOAD_PATTERNS)]
        return "[modules]\nautoload = yes\n" + "".join(f"noload => {m}\n" for m in noload)

    def _manager_conf(self) -> str:
        return f"""[general]
enabled = yes
webenabled = no
port = {self.ami_port}
bindaddr = 127.0.0.1
displayconnects = no

[{self.ami_username}]
secret = {self.ami_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = all
write = all

""" + DAEMON_AMI_USER.read_text().replace("secret = CHANGE-ME", f"secret = {self.daemon_ami_secret}")

    def _http_conf(self) -> str:
        return f"""[general]
enabled = yes
bindaddr = 127.0.0.1
bindport = {self.http_port}
"""

    def _ari_conf(self) -> str:
        daemon_user = DAEMON_ARI_USER.read_text().replace("password = CHANGE-ME", f"password = {self.daemon_ari_password}")
        return daemon_user + f"""
[{self.ari_username}]
type = user
read_only = no
password = {self.ari_password}
"""

    def _features_conf(self) -> str:
        return f"""[general]
transferdigittimeout = 3
atxfernoanswertimeout = 15

[featuremap]
blindxfer = {self.blindxfer_code}
atxfer = {self.atxfer_code}
"""

    def _extensions_conf(self) -> str:
        return f"""[general]
static = yes
writeprotect = yes
clearglobalvars = no

[globals]
AGI_DAEMON_URL = {self.agi_url}

#include {self.inside}/etc/{DIALPLAN_VARIANTS[self.dialplan_variant]}
#include {self.inside}/etc/{FALLBACK_FILE}
{TEST_CONTEXTS}"""


# Files whose absence makes Asterisk log an error at every start.
QUIET_CONFS = {
    "cdr.conf": "[general]\nenable = no\n",
    "cel.conf": "[general]\nenable = no\n",
    "ccss.conf": "[general]\n",
    "acl.conf": "",
    "udptl.conf": "[general]\n",
    "websocket_client.conf": "",
    "cli_aliases.conf": "[general]\n",
}

LOGGER_CONF = """[general]
dateformat = %F %T.%3q

[logfiles]
console => notice,warning,error,verbose
full => notice,warning,error,verbose
"""

TEST_CONTEXTS = r"""
; Employees' phones: Local/<extension>@employees. Global EMPLOYEE_<ext> picks the behaviour.
[employees]
exten => _X.,1,UserEvent(AgiDaemonTestRing,Extension: ${EXTEN})
 same => n,Set(behaviour=${GLOBAL(EMPLOYEE_${EXTEN})})
 same => n,GotoIf($["${behaviour}" = "noanswer"]?noanswer)
 same => n,GotoIf($["${behaviour}" = "busy"]?busy)
 same => n,GotoIf($["${behaviour}" = "deskphone"]?deskphone)
 same => n,Answer()
 same => n,Wait(60)
 same => n,Hangup()
 same => n(noanswer),Ringing()
 same => n,Wait(120)
 same => n,Hangup()
 same => n(busy),Busy(10)
 same => n(deskphone),Dial(Local/${EXTEN}@desk-phones,,tT)
 same => n,Hangup()

; The phone on an employee's desk, dialled by [employees] for behaviour "deskphone": the
; endpoint template's Local channel dials a phone in turn, as it does when the admin's
; employees context Dial()s each extension's SIP phone.
[desk-phones]
exten => _X.,1,Answer()
 same => n,Wait(60)
 same => n,Hangup()

; The outgoing trunk: Local/<number>@trunk answers every number.
[trunk]
exten => _X!,1,UserEvent(AgiDaemonTestTrunk,Number: ${EXTEN})
 same => n,Answer()
 same => n,Wait(60)
 same => n,Hangup()
exten => _+X!,1,UserEvent(AgiDaemonTestTrunk,Number: ${EXTEN})
 same => n,Answer()
 same => n,Wait(60)
 same => n,Hangup()

; An admin's own dialplan for the phones, bypassing agi-daemon-outgoing: dials the trunk.
[phones]
exten => _X!,1,Dial(Local/${EXTEN}@trunk,,T)
 same => n,Hangup()

; The phones' context as the README sets it up: external numbers go through the daemon (the
; context a phone's keypad transfer looks its digits up in).
[from-phones]
exten => _0X.,1,Set(TRANSFER_CONTEXT=from-phones)
 same => n,Goto(agi-daemon-outgoing,${EXTEN},1)

; The originating side of test calls (the client for incoming calls, the employee for outgoing).
[originate-caller]
exten => s,1,Answer()
 same => n,Wait(120)
 same => n,Hangup()
"""
