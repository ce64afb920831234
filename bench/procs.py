"""Processes under measure: CPU time and resident memory from /proc, pinning to a core, and
the servers the bench starts (each on 127.0.0.1 and an ephemeral port)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]
SERVER_CORE = 0
GENERATOR_CORE = 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_time(pid: int) -> float:
    """Seconds on a CPU of the process's live threads, to the nanosecond (/proc/PID/task/*/
    schedstat): for figures too small for /proc/PID/stat's 10 ms ticks (threads that exited
    are not counted: use it on processes whose threads stay)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except OSError:
            pass
    return total / 1e9


def thread_run_times(pid: int) -> dict[int, int]:
    """Nanoseconds on a CPU of each live thread of the process (/proc/PID/task/*/schedstat)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except OSError:
            pass
    return found


def loop_and_threads_us(pid: int, before: dict[int, int], sessions: int) -> dict[str, float]:
    """µs per session since `before` on the event loop (the main thread) and in the other
    threads (the CRM's writer, the log writer)."""
    loop = other = 0
    for tid, ns in thread_run_times(pid).items():
        if tid == pid:
            loop += ns - before.get(tid, 0)
        else:
            other += ns - before.get(tid, 0)
    return {"event_loop_us": loop / sessions / 1e3, "other_threads_us": other / sessions / 1e3}


def rss_kib(pid: int) -> int:
    found = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(found[1]) if found else 0


def cores() -> int:
    return len(os.sched_getaffinity(0))


# The cores this process may use as it starts, before `pin`: what a program an admin starts gets.
STARTING_CORES = frozenset(os.sched_getaffinity(0))


def pin(pid: int, core: int) -> None:
    """Pin to one core when the machine has two or more (server on 0, generator on 1)."""
    if os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(pid, {core})


def settle(pid: int, *, quiet_for: float = 0.3, timeout: float = 30.0) -> None:
    """Wait until the process stops spending CPU (work it does after answering counts too)."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_for)
        now = cpu_seconds(pid)
        if now - last < 1.5 / TICKS:
            return
        last = now


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_for(what: str, probe, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := probe()) is not None:
            return value
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{what} did not start listening:\n{log.read_text()[-3000:]}")


def start_baseline(kind: str, directory: Path, *args: str) -> Server:
    port_file, log = directory / f"{kind}.port", directory / f"{kind}.log"
    port_file.unlink(missing_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "bench.servers", kind, str(port_file), *args],
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    pin(process.pid, SERVER_CORE)
    port = _wait_for(kind, lambda: int(port_file.read_text()) if port_file.exists() and port_file.read_text() else None,
                     process, log)
    return Server(kind, process, port, log)


def start_daemon(config: Path, directory: Path, *, extra_args: tuple[str, ...] = ()) -> Server:
    """`agi-daemon run -c CONFIG` (listening on 127.0.0.1:0); the port comes from its log."""
    log = directory / "daemon.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "agi_daemon", "run", "-c", str(config), *extra_args],
                                   cwd=directory, stdout=out, stderr=subprocess.STDOUT)
    pin(process.pid, SERVER_CORE)

    def port() -> int | None:
        found = re.search(r"FastAGI listening on 127\.0\.0\.1:(\d+)", log.read_text())
        return int(found[1]) if found else None

    return Server("agi-daemon", process, _wait_for("agi-daemon", port, process, log), log)


class Profile:
    """py-spy recording a process while a measure runs, when the bench runs with
    `--profile DIR` (py-spy comes with the `bench` extra): DIR/NAME.txt in py-spy's raw
    (collapsed stacks) format, to read with a flame graph tool or bench/profile_top.py."""

    directory: Path | None = None

    def __init__(self, name: str, pid: int) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        self._process = subprocess.Popen([str(spy), "record", "-p", str(pid), "-r", "1000", "-f", "raw", "--nonblocking", "--threads",
                                          "-o", str(self.directory / f"{name}.txt")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def __enter__(self) -> "Profile":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)
            self._process.wait(30)
