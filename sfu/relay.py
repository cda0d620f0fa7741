"""Media relayed between the nodes of a cluster: packet format and routing, sans-I/O.

A room spans nodes: its *origin* decides (stage, slot ranking) and its *edges* serve
participants connected to them.  The origin sends each edge every routed speaker's
packets once, whatever the edge's audience; an edge fans them out to its own
listeners through the ordinary forwarding path, and relays its own speakers'
packets upstream to the origin.

A relayed packet is an RTP packet (SRTP-protected by ``sfu.rtc.relay``) whose payload
starts with what the receiving node needs to forward it: the room, the speaker and its
RFC 6464 level.  They ride inside the payload, so SRTP encrypts them with the audio.
Each (room, speaker) a node relays is its own RTP stream (SSRC), so every stream's
sequence numbers are the speaker's own and SRTP's replay protection holds per stream.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from sfu.rtp import build_header, parse_header

RELAY_PAYLOAD_TYPE = 96
# level (255: none), room length, speaker length, sending node's clock (µs, mod 2^32)
_META = struct.Struct("!BHHI")
_NO_LEVEL = 0xFF
MAX_NAME_BYTES = 0xFFFF
_WRAP = 1 << 32


@dataclass(frozen=True, slots=True)
class RelayPacket:
    room: str
    source: str
    """The speaking participant."""
    level: int | None
    sequence_number: int
    timestamp: int
    marker: bool
    payload: bytes
    """The speaker's Opus frame, untouched."""
    sent_us: int = 0
    """When the sending node sent it: its wall clock in µs, modulo 2^32 (``relay_delay``)."""


def relay_delay(sent_us: int, now_us: int) -> float:
    """Seconds from ``sent_us`` to ``now_us`` (both mod 2^32 µs; nodes' clocks in sync)."""
    elapsed = (now_us - sent_us) % _WRAP
    return (elapsed - _WRAP if elapsed >= _WRAP // 2 else elapsed) / 1e6


def encode(packet: RelayPacket, ssrc: int) -> bytes:
    """The clear RTP packet for ``packet`` on relay stream ``ssrc``."""
    room, source = packet.room.encode(), packet.source.encode()
    if len(room) > MAX_NAME_BYTES or len(source) > MAX_NAME_BYTES:
        raise ValueError("room or participant name too long to relay")
    level = _NO_LEVEL if packet.level is None else packet.level & 0x7F
    header = build_header(
        RELAY_PAYLOAD_TYPE, packet.marker, packet.sequence_number, packet.timestamp, ssrc
    )
    return b"".join(
        (
            header,
            _META.pack(level, len(room), len(source), packet.sent_us % _WRAP),
            room,
            source,
            packet.payload,
        )
    )


def decode(data: bytes) -> RelayPacket:
    """Parse a clear relay packet; raises ValueError on anything else."""
    header = parse_header(data)
    if header.payload_type != RELAY_PAYLOAD_TYPE:
        raise ValueError("not a relay packet")
    offset = header.payload_offset
    if len(data) < offset + _META.size:
        raise ValueError("truncated relay packet")
    level, room_len, source_len, sent_us = _META.unpack_from(data, offset)
    offset += _META.size
    end = offset + room_len + source_len
    if len(data) < end or not room_len or not source_len:
        raise ValueError("truncated relay packet")
    try:
        room = data[offset : offset + room_len].decode()
        source = data[offset + room_len : end].decode()
    except UnicodeDecodeError as exc:
        raise ValueError("relay packet names are not UTF-8") from exc
    return RelayPacket(
        room=room,
        source=source,
        level=None if level == _NO_LEVEL else level,
        sequence_number=header.sequence_number,
        timestamp=header.timestamp,
        marker=header.marker,
        payload=data[end:],
        sent_us=sent_us,
    )


class RelayStreams:
    """One SSRC per (room, speaker) this node relays, kept while the speaker is there."""

    def __init__(self) -> None:
        self._ssrcs: dict[tuple[str, str], int] = {}
        self._next = 1

    def ssrc(self, room: str, source: str) -> int:
        key = (room, source)
        ssrc = self._ssrcs.get(key)
        if ssrc is None:
            ssrc = self._ssrcs[key] = self._next
            self._next = self._next % 0xFFFFFFFF + 1
        return ssrc

    def forget(self, room: str, source: str) -> None:
        """A new stream next time: a returning speaker's sequence numbers start afresh."""
        self._ssrcs.pop((room, source), None)

    def __len__(self) -> int:
        return len(self._ssrcs)


class RelayPlan:
    """Which nodes one room's packets go to from this node, and whose relayed packets it takes.

    ``origin`` is the room's origin node, or None on the origin itself.  On the origin,
    ``place`` records each remote participant's node: the edges are the nodes with
    participants, and a speaker's packets go to every edge but its own.  On an edge,
    its own speakers go upstream to the origin; what the origin sends is fanned out here.
    """

    def __init__(self, origin: str | None) -> None:
        self.origin = origin
        self._placement: dict[str, str] = {}
        self._members: Counter[str] = Counter()
        self.edges: tuple[str, ...] = ()
        self.relayed: set[str] = set()
        """Edge only: speakers whose packets come from the origin (not connected here)."""

    @property
    def is_origin(self) -> bool:
        return self.origin is None

    def place(self, participant: str, node: str) -> None:
        self.unplace(participant)
        self._placement[participant] = node
        self._members[node] += 1
        self.edges = tuple(self._members)

    def unplace(self, participant: str) -> str | None:
        node = self._placement.pop(participant, None)
        if node is not None:
            self._members[node] -= 1
            if not self._members[node]:
                del self._members[node]
            self.edges = tuple(self._members)
        return node

    def node_of(self, participant: str) -> str | None:
        return self._placement.get(participant)

    def targets(self, source: str, routed: bool) -> tuple[str, ...]:
        """The nodes a packet of ``source`` goes to, given whether it is routed at all."""
        if not routed:
            return ()
        if self.origin is not None:
            return () if source in self.relayed else (self.origin,)
        home = self._placement.get(source)
        return self.edges if home is None else tuple(n for n in self.edges if n != home)

    def accepts(self, node: str, source: str) -> bool:
        """Whether a relayed packet of ``source`` may come from ``node``."""
        if self.origin is not None:
            return node == self.origin
        return self._placement.get(source) == node
