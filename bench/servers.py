"""The two baselines the daemon is compared with, each run as its own process:

    python -m bench.servers bare PORT_FILE
    python -m bench.servers panoramisk PORT_FILE

bare: the least a FastAGI server can do in asyncio: read the header, send one
`SET VARIABLE`, read its reply, close. panoramisk: `panoramisk.fast_agi.Application` with a
trivial async handler sending the same command. Both listen on 127.0.0.1, an ephemeral port
written to PORT_FILE once listening; SIGTERM stops them.

panoramisk's header loop spins forever on a connection closed mid-header (a known defect);
the load generator always sends whole headers, so the benchmark never meets it. Its
`add_route` wraps plain functions with `asyncio.coroutine`, gone in Python 3.11: the handler
here is `async def`.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path


async def bare_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\n\n")
        writer.write(b'SET VARIABLE "AGI_DAEMON_STATUS" "ok"\n')
        await reader.readline()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def panoramisk_handler(request) -> None:  # noqa: ANN001 - panoramisk's Request
    await request.send_command('SET VARIABLE "AGI_DAEMON_STATUS" "ok"')


async def serve(kind: str, port_file: Path) -> None:
    if kind == "bare":
        handler = bare_session
    elif kind == "panoramisk":
        import logging

        from panoramisk.fast_agi import Application

        logging.getLogger("panoramisk").setLevel(logging.WARNING)  # it logs each request at INFO
        app = Application()
        app.add_route("incoming", panoramisk_handler)
        handler = app.handler
    else:
        raise SystemExit(f"unknown server {kind!r}: bare or panoramisk")
    server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], Path(sys.argv[2])))
