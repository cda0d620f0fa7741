"""A user-space UDP relay that impairs a link: random or bursty loss, delay, jitter.

This kernel has no netem, so tests and ``benchmarks.impairment`` put this
between one WebRTC client and the server, on loopback: the client is told the
relay's port instead of the server's (``relayed_answer`` rewrites the answer's
candidates) and the server the relay's other port instead of the client's
(``relayed_offer``), so no direct path exists; the relay forwards each way
from its own sockets.

Only media (RTP/RTCP: first byte 128-191, RFC 7983) is impaired; STUN and
DTLS pass untouched, so a lossy link still connects promptly.  SRTP leaves
RTP headers in the clear, so the relay notes the (SSRC, sequence number) of
every RTP packet it drops.  Bounded: loss at most 50 %, delay plus jitter at
most 1 s, at most 10 000 packets in flight per direction; packets keep their
order (jitter delays, never reorders).
"""

from __future__ import annotations

import asyncio
import random
import re
import struct
from dataclasses import dataclass, field
from typing import Any, cast

from signaling.client.client import PodiumClient

MAX_DELAY = 1.0
MAX_IN_FLIGHT = 10_000


@dataclass(frozen=True)
class Impairment:
    loss: float = 0.0
    """Average share of media packets dropped."""
    burst: float = 1.0
    """Mean length of a run of losses (Gilbert-Elliott); 1: independent losses."""
    delay: float = 0.0
    """Seconds added to every packet."""
    jitter: float = 0.0
    """Up to this many seconds more, uniformly (order is kept)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 0.5:
            raise ValueError("loss must be within 0..0.5")
        if self.burst < 1.0:
            raise ValueError("burst must be at least 1")
        if self.delay < 0 or self.jitter < 0 or self.delay + self.jitter > MAX_DELAY:
            raise ValueError(f"delay + jitter must be within 0..{MAX_DELAY} s")


@dataclass
class Direction:
    """One way through the relay: its impairment, its loss state and what it did."""

    impairment: Impairment
    rng: random.Random
    passed: int = 0
    dropped: int = 0
    dropped_rtp: set[tuple[int, int]] = field(default_factory=set)
    in_flight: int = 0
    _bad: bool = False
    _last_due: float = 0.0

    def lose(self) -> bool:
        """Gilbert-Elliott: bad runs of mean length ``burst``, a stationary loss of ``loss``."""
        imp = self.impairment
        if imp.loss <= 0.0:
            return False
        if self._bad:
            self._bad = self.rng.random() < 1.0 - 1.0 / imp.burst
        else:
            self._bad = self.rng.random() < imp.loss / (imp.burst * (1.0 - imp.loss))
        return self._bad

    def due(self, now: float) -> float:
        imp = self.impairment
        due = max(self._last_due, now + imp.delay + self.rng.uniform(0.0, imp.jitter))
        self._last_due = due
        return due


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: object) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)  # type: ignore[operator]


class ImpairmentRelay:
    """Relays one client ⇄ ``server``; ``down`` impairs server → client, ``up`` the reverse."""

    def __init__(
        self,
        down: Impairment = Impairment(),
        up: Impairment = Impairment(),
        seed: int = 1,
    ) -> None:
        self.down = Direction(down, random.Random(seed))
        self.up = Direction(up, random.Random(seed + 1))
        self.server: tuple[str, int] | None = None
        self._client: tuple[str, int] | None = None
        self._front: _Endpoint | None = None
        self._back: _Endpoint | None = None

    @property
    def port(self) -> int:
        assert self._front is not None and self._front.transport is not None
        return int(self._front.transport.get_extra_info("sockname")[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, self._front = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_client), local_addr=("127.0.0.1", 0)
        )
        _, self._back = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_server), local_addr=("127.0.0.1", 0)
        )

    def close(self) -> None:
        for endpoint in (self._front, self._back):
            if endpoint is not None and endpoint.transport is not None:
                endpoint.transport.close()

    def relayed_offer(self, sdp: str) -> str:
        """The client's offer with its UDP candidates pointing at this relay's server side,
        so the server's checks cannot find a direct path that bypasses the relay."""
        assert self._back is not None and self._back.transport is not None
        back = int(self._back.transport.get_extra_info("sockname")[1])
        return re.sub(
            r"(a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1) \d+ typ host",
            rf"\1 {back} typ host",
            sdp,
        )

    def relayed_answer(self, sdp: str) -> str:
        """The server's answer with its UDP candidates pointing at this relay instead."""
        found = re.search(r"a=candidate:\S+ \d+ udp \d+ (127\.0\.0\.1) (\d+) typ host", sdp)
        if found is None:
            raise ValueError("no loopback UDP host candidate in the answer")
        self.server = (found.group(1), int(found.group(2)))
        return re.sub(rf"127\.0\.0\.1 {self.server[1]}\b", f"127.0.0.1 {self.port}", sdp)

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        self._client = addr
        if self.server is not None and self._back is not None:
            self._pass(self.up, data, self._back, self.server)

    def _from_server(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._client is not None and self._front is not None:
            self._pass(self.down, data, self._front, self._client)

    def _pass(self, way: Direction, data: bytes, out: _Endpoint, to: tuple[str, int]) -> None:
        media = len(data) >= 12 and 128 <= data[0] <= 191
        if media and (way.lose() or way.in_flight >= MAX_IN_FLIGHT):
            way.dropped += 1
            if not 192 <= data[1] <= 223:  # RTP, not RTCP: note which packet
                (seq,) = struct.unpack_from("!H", data, 2)
                (ssrc,) = struct.unpack_from("!I", data, 8)
                way.dropped_rtp.add((ssrc, seq))
            return
        way.passed += 1
        transport = out.transport
        if transport is None:
            return
        imp = way.impairment
        if not media or (imp.delay == 0.0 and imp.jitter == 0.0):
            transport.sendto(data, to)
            return
        loop = asyncio.get_running_loop()
        way.in_flight += 1

        def deliver() -> None:
            way.in_flight -= 1
            if not transport.is_closing():
                transport.sendto(data, to)

        loop.call_at(way.due(loop.time()), deliver)


async def connect_through(relay: ImpairmentRelay, url: str, token: str, **kw: Any) -> PodiumClient:
    """``PodiumClient.connect`` with its media going through ``relay`` (started)."""

    class Relayed(PodiumClient):
        async def request(self, kind: str, timeout: float = 10.0, **data: Any) -> dict[str, Any]:
            if kind == "offer":
                data["sdp"] = relay.relayed_offer(data["sdp"])
            response = await super().request(kind, timeout, **data)
            if kind == "offer":
                response["sdp"] = relay.relayed_answer(response["sdp"])
            return response

    return await Relayed.connect(url, token, **kw)
