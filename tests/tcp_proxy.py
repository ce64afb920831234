"""A loopback TCP proxy a test can cut, to drop a real connection (daemon <-> Asterisk AMI)."""
from __future__ import annotations

import asyncio


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1", *, stall_websockets: bool = False) -> None:
        """`stall_websockets`: a connection whose request asks for a WebSocket upgrade is held,
        never answered (as a deadlocked ARI holds its events WebSockets); others go through."""
        self.target_port = target_port
        self.host = host
        self.stall_websockets = stall_websockets
        self.stalled = 0
        self.port = 0
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._frozen_upto = 0  # connections numbered up to this one carry nothing more
        self._never = asyncio.Event()

    async def __aenter__(self) -> "TcpProxy":
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    def freeze(self) -> None:
        """The connections open now go silent, both ways, without closing (a link gone dead:
        nothing arrives, not even a close); new connections go through."""
        self._frozen_upto = self.connections

    def cut(self) -> None:
        """Drop every connection going through the proxy, both sides, at once."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = b""
        if self.stall_websockets:
            first = await reader.read(65536)
            if b"upgrade: websocket" in first.lower():
                self.stalled += 1
                self._writers.add(writer)  # held open until cut
                return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        number = self.connections
        self._writers |= {writer, up_writer}
        if first:
            up_writer.write(first)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink, number))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, number: int) -> None:
        try:
            while data := await source.read(65536):
                if number <= self._frozen_upto:
                    await self._never.wait()  # held until the proxy closes
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()
