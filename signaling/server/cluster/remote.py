"""The origin's end of a client connected to another node: a WebSocket made of messages.

A ``RemoteSession`` on the origin serves the client exactly as a ``Session`` serves a
local one; its socket is a ``RemoteSocket``: frames the edge forwarded come in through
``feed``, and what the session sends goes back to the edge in the node's one ordered
stream of messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import WSMessage, WSMsgType

from signaling.server.context import ServerContext
from signaling.server.session import Session

Send = Callable[[dict[str, Any]], None]


class RemoteSocket:
    def __init__(self, send: Send, conn: str, edge: str) -> None:
        self._send = send
        self.conn = conn
        self.edge = edge
        self._incoming: asyncio.Queue[WSMessage | None] = asyncio.Queue()
        self._closed = False
        self._close_code: int | None = None

    # -- from the edge ---------------------------------------------------------
    def feed(self, data: str | bytes) -> None:
        kind = WSMsgType.TEXT if isinstance(data, str) else WSMsgType.BINARY
        self._incoming.put_nowait(WSMessage(kind, data, None))

    def end(self, code: int | None) -> None:
        """The client's connection to the edge is gone (``code``: its close code there; None
        when the edge itself died)."""
        self._close_code = code
        self._closed = True
        self._incoming.put_nowait(None)

    # -- what Session uses ---------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def close_code(self) -> int | None:
        """As the edge saw it: a lost link holds the seat for a resume through any node."""
        return self._close_code

    def __aiter__(self) -> RemoteSocket:
        return self

    async def __anext__(self) -> WSMessage:
        message = await self._incoming.get()
        if message is None:
            raise StopAsyncIteration
        return message

    def push(self, data: str) -> None:
        """One frame to the client, into the node's ordered stream (nothing to wait for)."""
        if not self._closed:
            self._send({"t": "msg", "conn": self.conn, "text": data})

    async def send_str(self, data: str, compress: int | None = None) -> None:
        self.push(data)

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        if self._closed:
            return False
        self._closed = True
        self._send({"t": "close", "conn": self.conn, "reason": message.decode(errors="replace")})
        self._incoming.put_nowait(None)
        return True


class RemoteSession(Session):
    """A ``Session`` for a client on another node, minus the writer task per client.

    What it sends goes straight into the node's ordered message stream, so a room's
    broadcast to thousands of remote listeners is a loop of appends, not thousands of
    task switches. Its goodbye still goes through ``Session.close`` (queued after
    everything sent before it).
    """

    def __init__(self, socket: RemoteSocket, server: ServerContext) -> None:
        super().__init__(socket, server)
        self._socket = socket
        self.edge = socket.edge
        self.conn = socket.conn

    def send(self, text: str) -> None:
        if self.close_reason is None:
            self._socket.push(text)
