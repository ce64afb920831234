"""The Asterisk side of FastAGI, as a load generator: many concurrent sessions on loopback.

Each session connects, sends an `agi_` header and the empty line, then answers every command
line as Asterisk would (`200 result=0` to `EXEC MSet`, `200 result=1` to anything else) until
the server closes; a session can also play the channel hanging up (`HANGUP` before its first
reply, as Asterisk sends it when the caller leaves). Latency is from the start of the
connection to the first command received: what a call waits for its routing answer.

`run_load` keeps `concurrency` sessions in flight until `total` are done, in one process or
several (`processes`): asyncio protocols, not streams, so that one process on one core drives
thousands of sessions per second.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

HeaderFactory = Callable[[int], bytes]


def agi_header(port: int, route: str, *, extension: str, callerid: str, args: tuple[str, ...] = ()) -> bytes:
    """The header Asterisk sends for `AGI(agi://127.0.0.1:port/route,args...)`."""
    fields = {
        "agi_network": "yes", "agi_network_script": route, "agi_request": f"agi://127.0.0.1:{port}/{route}",
        "agi_channel": "Local/0184880000@agi-daemon-incoming-0000a1b2;2", "agi_language": "en",
        "agi_type": "Local", "agi_uniqueid": "1733100000.101", "agi_version": "22.0.0",
        "agi_callerid": callerid, "agi_calleridname": "unknown", "agi_callingpres": "0",
        "agi_callingani2": "0", "agi_callington": "0", "agi_callingtns": "0", "agi_dnid": "unknown",
        "agi_rdnis": "unknown", "agi_context": "agi-daemon-incoming", "agi_extension": extension,
        "agi_priority": "3", "agi_enhanced": "0.0", "agi_accountcode": "", "agi_threadid": "140000000000000",
    }
    fields.update({f"agi_arg_{n}": value for n, value in enumerate(args, 1)})
    return "".join(f"{name}: {value}\n" for name, value in fields.items()).encode() + b"\n"


@dataclass
class LoadResult:
    sessions: int = 0
    failed: int = 0  # refused, reset, or closed before any command
    wall_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, one per session with a command
    commands: list[bytes] = field(default_factory=list)  # a sample of first commands, for checks

    def merge(self, other: "LoadResult") -> None:
        self.sessions += other.sessions
        self.failed += other.failed
        self.wall_seconds = max(self.wall_seconds, other.wall_seconds)
        self.latencies += other.latencies
        self.commands += other.commands[: max(0, 20 - len(self.commands))]


class _Session(asyncio.Protocol):
    """One FastAGI session from Asterisk's side."""

    def __init__(self, header: bytes, done: asyncio.Future[None], started: float, result: LoadResult,
                 hold: asyncio.Event | None, held: Callable[[], None] | None, hangup: bool) -> None:
        self._header = header
        self._done = done
        self._started = started
        self._result = result
        self._hold = hold
        self._held = held
        self._hangup = hangup
        self._buffer = b""
        self._commands = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._header)
        if self._hangup:
            transport.write(b"HANGUP\n")

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line, self._buffer = self._buffer[:end], self._buffer[end + 1:]
            self._command(line)

    def _command(self, line: bytes) -> None:
        self._commands += 1
        if self._commands == 1:
            self._result.latencies.append(time.perf_counter() - self._started)
            if len(self._result.commands) < 20:
                self._result.commands.append(line)
            if self._hold is not None and not self._hold.is_set():
                assert self._held is not None
                self._held()
                asyncio.get_running_loop().create_task(self._reply_later(line))
                return
        self._reply(line)

    async def _reply_later(self, line: bytes) -> None:
        assert self._hold is not None
        await self._hold.wait()
        self._reply(line)

    def _reply(self, line: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"200 result=0\n" if line.startswith(b'EXEC "MSet"') else b"200 result=1\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._commands == 0 and not self._hangup:
            self._result.failed += 1
        if not self._done.done():
            self._done.set_result(None)


async def _load(port: int, headers: HeaderFactory, start: int, total: int, concurrency: int,
                hangup: bool = False) -> LoadResult:
    loop = asyncio.get_running_loop()
    result = LoadResult()
    next_index = start
    stop = start + total

    async def one(index: int) -> None:
        done: asyncio.Future[None] = loop.create_future()
        started = time.perf_counter()
        try:
            await loop.create_connection(
                lambda: _Session(headers(index), done, started, result, None, None, hangup), "127.0.0.1", port)
            await asyncio.wait_for(done, 30)
        except (OSError, TimeoutError):
            result.failed += 1
        result.sessions += 1

    async def worker() -> None:
        nonlocal next_index
        while next_index < stop:
            index, next_index = next_index, next_index + 1
            await one(index)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))
    result.wall_seconds = time.perf_counter() - began
    return result


def _raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _child(port: int, headers: HeaderFactory, start: int, total: int, concurrency: int, hangup: bool,
           cpus: set[int] | None, queue: "multiprocessing.Queue[LoadResult]") -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    _raise_file_limit(concurrency * 2 + 100)
    queue.put(asyncio.run(_load(port, headers, start, total, concurrency, hangup)))


def run_load(port: int, headers: HeaderFactory, *, total: int, concurrency: int, processes: int = 1,
             hangup: bool = False, cpus: set[int] | None = None) -> LoadResult:
    """`total` sessions, `concurrency` at a time, shared among `processes` generator processes
    (forked, pinned to `cpus`); session i gets `headers(i)`."""
    processes = max(1, min(processes, concurrency))
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[LoadResult] = context.Queue()
    children = []
    start = 0
    for n in range(processes):
        share = total // processes + (n < total % processes)
        width = concurrency // processes + (n < concurrency % processes)
        child = context.Process(target=_child, args=(port, headers, start, share, width, hangup, cpus, queue))
        child.start()
        children.append(child)
        start += share
    result = LoadResult()
    for _ in children:
        result.merge(queue.get(timeout=600))
    for child in children:
        child.join()
    return result


async def hold_idle(port: int, headers: HeaderFactory, count: int, measure: Callable[[], None],
                    timeout: float = 60.0) -> LoadResult:
    """Open `count` sessions and keep each one idle once its first command has arrived (the
    server waits for the reply, as while Asterisk runs a long command); call `measure()` when
    all are idle, then answer them all and wait for the sessions to end."""
    _raise_file_limit(count * 2 + 100)
    loop = asyncio.get_running_loop()
    result = LoadResult()
    hold = asyncio.Event()
    waiting = 0
    all_held = loop.create_future()

    def held() -> None:
        nonlocal waiting
        waiting += 1
        if waiting == count and not all_held.done():
            all_held.set_result(None)

    dones = []
    began = time.perf_counter()
    for index in range(count):
        done: asyncio.Future[None] = loop.create_future()
        dones.append(done)
        await loop.create_connection(
            lambda index=index, done=done: _Session(headers(index), done, time.perf_counter(), result, hold, held, False), "127.0.0.1", port)
    try:
        await asyncio.wait_for(all_held, timeout)
        measure()
    finally:
        hold.set()
    await asyncio.wait_for(asyncio.gather(*dones), timeout)
    result.sessions = count
    result.wall_seconds = time.perf_counter() - began
    return result


async def paced(port: int, headers: HeaderFactory, *, rate: float, total: int, background: int,
                background_headers: HeaderFactory, timeout: float = 60.0) -> LoadResult:
    """Latency under an open-loop load: `background` sessions held open and idle (calls in
    progress, each waiting for Asterisk's reply to its first command) while `total` new
    sessions start at `rate` per second, whether or not the earlier ones are done."""
    _raise_file_limit((background + total) * 2 + 100)
    loop = asyncio.get_running_loop()
    idle, result = LoadResult(), LoadResult()
    hold = asyncio.Event()
    waiting = 0
    all_held = loop.create_future()

    def held() -> None:
        nonlocal waiting
        waiting += 1
        if waiting == background and not all_held.done():
            all_held.set_result(None)

    dones: list[asyncio.Future[None]] = []
    for index in range(background):
        done: asyncio.Future[None] = loop.create_future()
        dones.append(done)
        await loop.create_connection(
            lambda index=index, done=done: _Session(background_headers(index), done, time.perf_counter(), idle, hold, held, False),
            "127.0.0.1", port)
    if background:
        await asyncio.wait_for(all_held, timeout)

    async def one(index: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - loop.time()))
        done: asyncio.Future[None] = loop.create_future()
        try:
            await loop.create_connection(
                lambda: _Session(headers(index), done, time.perf_counter(), result, None, None, False), "127.0.0.1", port)
            await asyncio.wait_for(done, timeout)
        except (OSError, TimeoutError):
            result.failed += 1
        result.sessions += 1

    began = loop.time()
    try:
        await asyncio.gather(*(one(n, began + n / rate) for n in range(total)))
    finally:
        hold.set()
    result.wall_seconds = loop.time() - began
    await asyncio.wait_for(asyncio.gather(*dones), timeout)
    return result
