"""What one source address may hold of the HTTP/WebSocket port.

``GuardedSite`` is aiohttp's ``TCPSite`` with every accepted connection
counted per source address: past ``max_per_address`` a new one is closed at
once, before aiohttp allocates a request handler for it.  (Connections that
never finish their headers, or sit idle, are closed by aiohttp's own
``keepalive_timeout``, which ``PodiumServer`` sets to ``header_timeout``; a
WebSocket that never joins is closed by its ``Session``.)
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web


class ConnectionCap:
    """Counts open connections per source address and refuses those over the cap."""

    def __init__(self, max_per_address: int) -> None:
        self.max_per_address = max_per_address
        self.open: Counter[str] = Counter()
        self.refused = 0

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Counted(self, factory)


class _Counted(asyncio.Protocol):
    """Forwards everything to the real protocol, which exists only for admitted connections."""

    def __init__(self, cap: ConnectionCap, factory: Callable[[], asyncio.Protocol]) -> None:
        self._cap = cap
        self._factory = factory
        self._inner: asyncio.Protocol | None = None
        self._source = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._source = str(peer[0]) if peer else ""
        if self._cap.open[self._source] >= self._cap.max_per_address:
            self._cap.refused += 1
            # uvloop's TCP transport has abort() but is no asyncio.Transport subclass.
            abort = getattr(transport, "abort", transport.close)
            abort()
            return
        self._cap.open[self._source] += 1
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return
        self._cap.open[self._source] -= 1
        if self._cap.open[self._source] <= 0:
            del self._cap.open[self._source]
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A ``TCPSite`` whose connections go through ``cap``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        cap: ConnectionCap,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._cap = cap

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would bind unguarded
        server: Any = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._cap.wrap(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
