"""The relay between cluster nodes: one SRTP-protected UDP socket per node, and rooms on it.

Every node draws an SRTP master key at start and publishes it with its relay address
through the cluster registry (Redis).  A node protects each relayed packet once with
its own key and sends the same bytes to every node that needs it; it accepts a
datagram only from the address of a registered node, and only if that node's key
authenticates it (libsrtp: HMAC-SHA1-80, replay window per stream).  Anything else is
dropped and counted: the relay port is not a door anyone on the network can push
audio through.

``RelayedMediaRoom`` is a ``MediaRoom`` whose packets also follow the room's
``sfu.relay.RelayPlan``, and which takes relayed speakers' packets into the ordinary
forwarding path.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, cast

from aiortc.rtp import RtpPacket
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from sfu.producer import VOICE_LEVEL
from sfu.relay import RelayPacket, RelayPlan, RelayStreams, decode, encode, relay_delay
from sfu.rtc.media_room import MediaRoom, MediaRoomSetup
from sfu.stats import DurationHistogram

logger = logging.getLogger(__name__)

KEY_BYTES = 30  # AES-128 key + 112-bit salt (SRTP_AES128_CM_HMAC_SHA1_80)
NEW_UPLINK_JUMP = 3000
"""A relayed speaker's sequence numbers jumping by more than this (a minute of audio lost,
either way) is a new peer connection on its node: numbered afresh, at random."""
Address = tuple[str, int]


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


class RelayEndpoint(asyncio.DatagramProtocol):
    """One node's relay socket: sends to and takes from the other nodes only."""

    def __init__(self, host: str, port: int = 0, key: bytes | None = None) -> None:
        self.host = host
        self.port = port
        self.key = key or new_key()
        self._tx = Session(Policy(key=self.key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
        self._streams = RelayStreams()
        self._peers: dict[Address, tuple[str, bytes, Session]] = {}  # by source address
        self._addresses: dict[str, Address] = {}  # node id → relay address
        self.rooms: dict[str, RelayedMediaRoom] = {}
        self.stats: Counter[str] = Counter()
        self.latency = DurationHistogram()
        """Sent by the other node until received here (their clocks' offset included)."""
        self.transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = self.transport.get_extra_info("sockname")[1]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # -- peers ---------------------------------------------------------------
    def set_peers(self, peers: Mapping[str, tuple[Address, bytes]]) -> None:
        """The cluster's other nodes: id → (relay address, SRTP key); replaces the last set.

        A node whose address and key are unchanged keeps its SRTP session (and replay state).
        """
        known = {addr: entry for addr, entry in self._peers.items()}
        self._peers = {}
        self._addresses = {}
        for node, (addr, key) in peers.items():
            entry = known.get(addr)
            if entry is None or entry[0] != node or entry[1] != key:
                rx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND))
                entry = (node, key, rx)
            self._peers[addr] = entry
            self._addresses[node] = addr

    def knows(self, node: str) -> bool:
        return node in self._addresses

    # -- sending -------------------------------------------------------------
    def send(self, nodes: Iterable[str], packet: RelayPacket) -> None:
        """Stamp, protect once, send the same datagram to each node."""
        if self.transport is None:
            return
        packet = replace(packet, sent_us=time.time_ns() // 1000)
        data = self._tx.protect(encode(packet, self._streams.ssrc(packet.room, packet.source)))
        for node in nodes:
            addr = self._addresses.get(node)
            if addr is None:
                self.stats["unknown_destination"] += 1
                continue
            self.transport.sendto(data, addr)
            self.stats["packets_out"] += 1

    def forget(self, room: str, source: str) -> None:
        self._streams.forget(room, source)

    # -- receiving -----------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Address) -> None:
        peer = self._peers.get((addr[0], addr[1]))
        if peer is None:
            self.stats["unknown_sender"] += 1
            return
        node, _, rx = peer
        try:
            packet = decode(rx.unprotect(data))
        except SrtpError:
            self.stats["auth_failed"] += 1
            return
        except ValueError:
            self.stats["malformed"] += 1
            return
        room = self.rooms.get(packet.room)
        if room is None:
            self.stats["no_room"] += 1
            return
        self.stats["packets_in"] += 1
        self.latency.observe(max(0.0, relay_delay(packet.sent_us, time.time_ns() // 1000)))
        room.on_relay(node, packet)

    def error_received(self, exc: Exception) -> None:
        self.stats["socket_errors"] += 1

    @property
    def streams(self) -> int:
        """Relay streams this node sends (one per room and speaker)."""
        return len(self._streams)

    @property
    def refused(self) -> int:
        """Datagrams refused: unknown sender, failed authentication, malformed."""
        return sum(self.stats[k] for k in ("unknown_sender", "auth_failed", "malformed"))

    def dump(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "peers": sorted(self._addresses),
            "streams_out": self.streams,
            **self.stats,
        }


class RelayedMediaRoom(MediaRoom):
    """A room's media on one node of a cluster (module doc): local peers plus the relay."""

    def __init__(self, setup: MediaRoomSetup, relay: RelayEndpoint, origin: str | None) -> None:
        super().__init__(setup)
        self.relay = relay
        self.plan = RelayPlan(origin)
        self._last_seq: dict[str, int] = {}  # relayed speaker -> its latest sequence number
        self._tasks_in: set[asyncio.Task[None]] = set()
        relay.rooms[setup.room_id] = self

    async def _forward(self, participant_id: str, packet: RtpPacket) -> None:
        await super()._forward(participant_id, packet)
        participant = self.room.participants.get(participant_id)
        if participant is None:
            return
        routed = participant.producer.routable and (
            not self.plan.is_origin or participant_id in self.room.ranking.order
        )
        nodes = self.plan.targets(participant_id, routed)
        if nodes:
            ext = packet.extensions.audio_level
            self.relay.send(
                nodes,
                RelayPacket(
                    room=self.room.id,
                    source=participant_id,
                    level=ext[1] if ext is not None else None,
                    sequence_number=packet.sequence_number,
                    timestamp=packet.timestamp,
                    marker=bool(packet.marker),
                    payload=packet.payload,
                ),
            )

    def on_relay(self, node: str, relayed: RelayPacket) -> None:
        """A speaker's packet from another node: into the forwarding path as if it were local."""
        source = relayed.source
        if not self.plan.accepts(node, source):
            self.stats["relay_refused"] += 1
            return
        now = time.monotonic()
        participant = self.room.participants.get(source)
        if self.plan.is_origin:
            if participant is None:  # not admitted (or already gone)
                self.stats["relay_refused"] += 1
                return
        elif participant is None:  # an edge hears whomever the origin routes
            participant = self.room.join(source, True, now)
            self.plan.relayed.add(source)
        elif source not in self.plan.relayed:  # connected here: never from the relay
            self.stats["relay_refused"] += 1
            return
        last = self._last_seq.get(source)
        self._last_seq[source] = relayed.sequence_number
        jump = (relayed.sequence_number - (last or 0)) % 65536
        renewed = last is not None and NEW_UPLINK_JUMP < jump < 65536 - NEW_UPLINK_JUMP
        if renewed:  # the streams carrying it resync, as on the speaker's own node
            self.stats["relay_uplink_renewed"] += 1
        if not participant.producer.has_uplink or renewed:
            self.room.set_uplink(source, True, now)
            self._deliver()
        packet = RtpPacket(
            payload_type=0,
            marker=int(relayed.marker),
            sequence_number=relayed.sequence_number,
            timestamp=relayed.timestamp,
            payload=relayed.payload,
        )
        if relayed.level is not None:
            packet.extensions.audio_level = (relayed.level <= VOICE_LEVEL, relayed.level)
        self.stats["relay_packets_in"] += 1
        task = asyncio.ensure_future(self._forward(source, packet))
        self._tasks_in.add(task)
        task.add_done_callback(self._tasks_in.discard)

    async def drop_relayed(self, source: str) -> None:
        """Edge: the origin no longer routes ``source`` (it left, was demoted or muted)."""
        if source in self.plan.relayed:
            self.plan.relayed.discard(source)
            await self.leave(source)

    @property
    def local_participants(self) -> int:
        return len(self.room.participants) - len(self.plan.relayed)

    async def leave(self, participant_id: str) -> None:
        await super().leave(participant_id)
        self._last_seq.pop(participant_id, None)
        self.relay.forget(self.room.id, participant_id)

    async def close(self) -> None:
        if self.relay.rooms.get(self.room.id) is self:
            del self.relay.rooms[self.room.id]
        await super().close()

    def dump(self) -> dict[str, Any]:
        data = super().dump()
        data["relay"] = {
            "origin": self.plan.origin,
            "edges": list(self.plan.edges),
            "relayed": sorted(self.plan.relayed),
        }
        return data
