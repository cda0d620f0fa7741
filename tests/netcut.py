"""A client's network path that a test can cut: a TCP proxy and a UDP relay on loopback.

There is no netem in this kernel, so a client under test reaches the server
through ``Link``: its WebSocket through a TCP proxy, its media through a UDP
relay.  ``cut()`` makes the path a black hole both ways, as a dead zone
does: UDP datagrams are dropped; TCP bytes are held back and delivered when
the link returns (TCP would retransmit them), closes included; new TCP
connections are accepted but get nowhere.  ``restore()`` brings it back.

One client per link.  The server announces its own media port and the
client its own, so each is told the relay's instead: ``client_class`` gives
a ``PodiumClient`` whose offer and answer candidates are rewritten (the
client-facing relay socket in the answer, the server-facing one in the offer).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, cast

from signaling.client import PodiumClient

Address = tuple[str, int]
HOST = "127.0.0.1"


class _Pipe:
    """One direction of one proxied TCP connection."""

    def __init__(self, link: Link, writer: asyncio.StreamWriter) -> None:
        self.link = link
        self.writer = writer
        self.held: list[bytes | None] = []  # None: the other side closed

    def push(self, data: bytes | None) -> None:
        if self.link.tcp_cut or self.held:
            self.held.append(data)
        else:
            self._write(data)

    def flush(self) -> None:
        held, self.held = self.held, []
        for data in held:
            self._write(data)

    def _write(self, data: bytes | None) -> None:
        if self.writer.is_closing():
            return
        if data is None:
            self.writer.close()
        else:
            self.writer.write(data)


class _Socket(asyncio.DatagramProtocol):
    """One side of the relay: what arrives is passed to ``forward`` unless the link is cut."""

    def __init__(self, link: Link, forward: Any) -> None:
        self.link = link
        self.forward = forward
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if not self.link.udp_cut:
            self.forward(data, addr)


class Link:
    def __init__(self, http_port: int, udp_port: int) -> None:
        self.http_target: Address = (HOST, http_port)
        self.udp_target: Address = (HOST, udp_port)
        self.tcp_cut = self.udp_cut = False
        self.pipes: list[_Pipe] = []
        self.client: Address | None = None  # the client's media address
        self.tcp_port = 0

    async def start(self) -> Link:
        loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.tcp_port = self._server.sockets[0].getsockname()[1]
        self._outer, self.outer = await loop.create_datagram_endpoint(
            lambda: _Socket(self, self._from_client), local_addr=(HOST, 0)
        )
        await self.rebind()
        return self

    async def rebind(self) -> None:
        """Give the client another address, as the server sees it (another network, a NAT
        rebinding): the relay's server-facing socket moves to a new port, the old one closes."""
        old = getattr(self, "_inner", None)
        self._inner, self.inner = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Socket(self, self._from_server), local_addr=(HOST, 0)
        )
        if old is not None:
            old.close()

    def _from_client(self, data: bytes, addr: Address) -> None:
        self.client = addr
        self._inner.sendto(data, self.udp_target)

    def _from_server(self, data: bytes, addr: Address) -> None:
        if self.client is not None:
            self._outer.sendto(data, self.client)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.tcp_port}/rtc"

    def cut(self, tcp: bool = True, udp: bool = True) -> None:
        self.tcp_cut, self.udp_cut = tcp, udp

    def restore(self) -> None:
        self.tcp_cut = self.udp_cut = False
        for pipe in self.pipes:
            pipe.flush()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.http_target)
        to_server, to_client = _Pipe(self, up_writer), _Pipe(self, writer)
        self.pipes += [to_server, to_client]
        await asyncio.gather(self._pump(reader, to_server), self._pump(up_reader, to_client))

    async def _pump(self, reader: asyncio.StreamReader, pipe: _Pipe) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                pipe.push(data)
        pipe.push(None)

    async def close(self) -> None:
        self._server.close()
        for pipe in self.pipes:
            pipe.writer.close()
        self._outer.close()
        self._inner.close()

    def relayed(self, sdp: str, via: int, learn: bool) -> str:
        """``sdp`` with every host candidate pointing at the relay's port ``via``."""

        def swap(match: re.Match[str]) -> str:
            if learn:
                self.client = (match.group(2), int(match.group(3)))
            return f"{match.group(1)}{HOST} {via}{match.group(4)}"

        return re.sub(r"(a=candidate:\S+ \d+ udp \d+ )(\S+) (\d+)( typ host)", swap, sdp)

    def relayed_offer(self, sdp: str) -> str:
        return self.relayed(sdp, self.inner_port, learn=True)

    def relayed_answer(self, sdp: str) -> str:
        return self.relayed(sdp, self.outer_port, learn=False)

    @property
    def outer_port(self) -> int:
        return int(self._outer.get_extra_info("sockname")[1])

    @property
    def inner_port(self) -> int:
        return int(self._inner.get_extra_info("sockname")[1])


def client_class(link: Link) -> type[PodiumClient]:
    """A ``PodiumClient`` whose media goes through ``link``'s relay."""

    class Relayed(PodiumClient):
        async def request(self, kind: str, timeout: float = 10.0, **data: Any) -> dict[str, Any]:
            if kind == "offer":
                data["sdp"] = link.relayed_offer(data["sdp"])
            reply = await super().request(kind, timeout, **data)
            if kind == "offer":
                reply = {**reply, "sdp": link.relayed_answer(reply["sdp"])}
            return reply

    return Relayed
