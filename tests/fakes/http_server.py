"""What the in-test HTTP servers standing in for a remote CRM share (the Bitrix24 portal, the
webhook CRM): an aiohttp application on 127.0.0.1, port 0, that a test can make refuse
connections and accept them again on the same port."""
from __future__ import annotations

from typing import Self

from aiohttp import web


class InTestHttpServer:
    """Subclasses add their routes in `routes`; `start()` returns the server, listening."""

    shutdown_timeout = 0.5

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> Self:
        app = web.Application()
        self.routes(app)
        # no access log: its lines would hold what the URLs carry (a webhook's secret)
        self._runner = web.AppRunner(app, shutdown_timeout=self.shutdown_timeout, access_log=None)
        await self._runner.setup()
        await self.accept_connections()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def refuse_connections(self) -> None:
        """Close the listening socket and the open (keep-alive) connections: connections are
        refused until accept_connections()."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for handler in self._runner.server.connections:
                handler.force_close()
                if handler.transport is not None:
                    handler.transport.close()

    async def accept_connections(self) -> None:
        """Listen again, on the same port once one was given."""
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        server = self._site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"
