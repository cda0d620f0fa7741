"""A core ``Room`` driven by real peer connections: negotiation, fan-out, cleanup.

The forwarding path is: aiortc decrypts and parses → ``MediaPeer`` tap →
``Room.on_rtp`` (accounting, role/mute enforcement, routing lookup) → for each
target slot ``Forwarder.rewrite`` → the slot's sink (SRTP protect into the shared
socket's send batch; one ``sendmmsg`` per event-loop pass, ``sfu/rtc/sendmmsg.py``).
No decode, no encode, no task per packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.rtp import RtpPacket

from sfu.activity import ActivityObserver
from sfu.config import MediaConfig
from sfu.consumer import Consumer
from sfu.events import RouterEvent
from sfu.mixer import MediaMode
from sfu.room import Room
from sfu.rtc.levels import PcmDecoder
from sfu.rtc.mixing import MixingEngine
from sfu.rtc.peer import MediaPeer, NegotiationError
from sfu.rtc.setup import rtc_configuration
from sfu.rtc.stats import DurationHistogram
from sfu.rtc.udp_mux import UdpMux
from sfu.slots import ArrivalOrderPolicy, LoudestPolicy, SlotPolicy

logger = logging.getLogger(__name__)

EventHandler = Callable[[RouterEvent], None]
PeerLostHandler = Callable[[str, str], Awaitable[None]]


class MediaRoom:
    def __init__(
        self,
        room_id: str,
        config: MediaConfig,
        on_event: EventHandler,
        on_peer_lost: PeerLostHandler,
        udp: UdpMux | None = None,
    ) -> None:
        policy: SlotPolicy = (
            LoudestPolicy(hold=config.speaker_hold)
            if config.slot_policy == "loudest"
            else ArrivalOrderPolicy()
        )
        observer = ActivityObserver(speaking_interval=config.speaking_interval)
        self.room = Room(room_id, policy, observer)
        self.config = config
        self.peers: dict[str, MediaPeer] = {}
        self.stats: Counter[str] = Counter()
        self.forward_time = DurationHistogram()  # one fan-out per inbound packet
        self._decoders: dict[str, PcmDecoder] = {}
        self._on_event = on_event
        self._on_peer_lost = on_peer_lost
        self._udp = udp
        self._tasks: list[asyncio.Task[None]] = []
        self.mixing = MixingEngine(self.room, config, self._fanout, on_event)

    # -- membership (called by the session layer) ------------------------
    def join(self, participant_id: str, may_publish: bool) -> None:
        self.room.join(participant_id, may_publish, time.monotonic())
        self._deliver()

    async def connect(self, participant_id: str, offer_sdp: str) -> str:
        """Answer ``participant_id``'s offer; raises NegotiationError.

        An offer from a participant that has a peer connection already replaces it
        (a client whose media path died starts a new one): its slots keep their
        sources, its uplink its place.
        """
        if participant_id not in self.room.participants:
            raise NegotiationError("invalid_state", "not in the room")
        await self._close_peer(participant_id)

        async def handle_rtp(packet: RtpPacket) -> None:
            await self._forward(participant_id, packet)

        async def handle_state(state: str) -> None:
            if self.peers.get(participant_id) is peer:  # not a replaced one
                await self._peer_state(participant_id, state)

        peer = MediaPeer(participant_id, rtc_configuration(), handle_rtp, handle_state, self._udp)
        self.peers[participant_id] = peer
        try:
            negotiated = await peer.negotiate(offer_sdp, self.config.slots)
        except BaseException:
            if self.peers.get(participant_id) is peer:
                del self.peers[participant_id]
            await peer.close()
            raise
        if self.peers.get(participant_id) is not peer:  # replaced while we negotiated
            await peer.close()
            raise NegotiationError("invalid_state", "a newer offer replaced this one")
        if participant_id not in self.room.participants:  # left while we negotiated
            await self._close_peer(participant_id)
            raise NegotiationError("invalid_state", "participant left during negotiation")
        now = time.monotonic()
        self.room.attach_slots(participant_id, negotiated.forwarders, now)
        self.room.set_uplink(participant_id, negotiated.has_uplink, now)
        self._deliver()
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._every(self.config.tick_interval, self._tick)),
                asyncio.create_task(
                    self._every(self.config.sender_report_interval, self._sender_reports)
                ),
            ]
        return negotiated.answer_sdp

    def set_publish_allowed(self, participant_id: str, allowed: bool) -> None:
        self.room.set_publish_allowed(participant_id, allowed, time.monotonic())
        self._deliver()

    def set_muted(self, participant_id: str, muted: bool) -> None:
        self.room.set_muted(participant_id, muted, time.monotonic())
        self._deliver()

    def set_media_mode(self, mode: MediaMode) -> None:
        """Forward, mix or auto, live: slot 0 switches to the mix (or back), no renegotiation."""
        self.mixing.set_mode(mode, time.monotonic())
        self._deliver()

    async def leave(self, participant_id: str) -> None:
        self.room.leave(participant_id, time.monotonic())
        self._decoders.pop(participant_id, None)
        self.mixing.remove(participant_id)
        self._deliver()
        await self._close_peer(participant_id)

    async def close(self) -> None:
        for pid in list(self.room.participants):
            await self.leave(pid)
        self.mixing.close()  # finishes a recording's file
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- packet path -----------------------------------------------------
    async def _forward(self, participant_id: str, packet: RtpPacket) -> None:
        started = time.perf_counter()
        ext = packet.extensions.audio_level
        level = ext[1] if ext is not None else None
        payload = packet.payload
        now = time.monotonic()
        stats = self.stats
        stats["packets_in"] += 1
        stats["bytes_in"] += len(payload)
        targets = self.room.on_rtp(participant_id, level, len(payload), now)
        if level is None and payload and self.room.wants_pcm(participant_id):
            self._decode_for_levels(participant_id, payload, now)
        self.mixing.push(participant_id, packet, now)
        if not targets:
            return
        seq, ts, marker = packet.sequence_number, packet.timestamp, bool(packet.marker)
        await self._fanout(participant_id, targets, seq, ts, marker, payload, level, now)
        self.forward_time.observe(time.perf_counter() - started)

    async def _fanout(
        self,
        source: str,
        targets: tuple[Consumer, ...],
        seq: int,
        ts: int,
        marker: bool,
        payload: bytes,
        level: int | None,
        now: float,
    ) -> None:
        """Write one packet of ``source`` (a speaker, or a mix) to each of its slots."""
        stats = self.stats
        chunk = self.config.fanout_chunk
        sent = failed = 0
        for i, consumer in enumerate(targets, 1):
            sink = consumer.sink
            if sink is None:  # subscriber's transport not up yet
                continue
            data = consumer.forwarder.rewrite(source, seq, ts, marker, payload, level, now)
            try:
                sink(data)
                sent += 1
            except Exception:  # a subscriber's broken transport must not stop the fan-out
                failed += 1
            if i % chunk == 0:
                await asyncio.sleep(0)
        stats["packets_out"] += sent
        stats["bytes_out"] += sent * len(payload)
        if failed:
            self.room.dropped["send_error"] += failed

    def _decode_for_levels(self, participant_id: str, payload: bytes, now: float) -> None:
        """Level fallback for clients that send no RFC 6464 extension: decode once, measure."""
        decoder = self._decoders.get(participant_id)
        if decoder is None:
            decoder = self._decoders[participant_id] = PcmDecoder()
        samples = decoder.decode(payload)
        if samples is not None:
            self.stats["pcm_decoded"] += 1
            self.room.on_pcm(participant_id, samples, now)

    # -- internals -------------------------------------------------------
    def _deliver(self) -> None:
        while (event := self.room.next_event()) is not None:
            self._on_event(event)

    async def _peer_state(self, participant_id: str, state: str) -> None:
        peer = self.peers.get(participant_id)
        participant = self.room.participants.get(participant_id)
        if peer is None or participant is None:
            return
        if state == "connected":
            for consumer, sink in zip(participant.consumers, peer.attach_transport(), strict=True):
                consumer.sink = sink
        elif state in ("failed", "closed"):
            await self._close_peer(participant_id)
            await self._on_peer_lost(participant_id, state)

    async def _close_peer(self, participant_id: str) -> None:
        peer = self.peers.pop(participant_id, None)
        if peer is None:
            return
        participant = self.room.participants.get(participant_id)
        for consumer in participant.consumers if participant else ():
            consumer.sink = None  # its transport is gone: the fan-out skips it
        await peer.close()

    @staticmethod
    async def _every(interval: float, job: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                job()
            except Exception:  # a periodic job must survive one bad round
                logger.exception("periodic media job failed")

    def _tick(self) -> None:
        now = time.monotonic()
        self.room.tick(now)
        self.mixing.review(now)
        self._deliver()

    def _sender_reports(self) -> None:
        now = time.monotonic()
        for peer in list(self.peers.values()):
            peer.send_sender_reports(now)

    def dump(self) -> dict[str, Any]:
        data = self.room.dump()
        data["peers"] = {pid: p.connection_state for pid, p in self.peers.items()}
        data["stats"] = dict(self.stats)
        data["mixing"] = self.mixing.dump()
        return data
