"""A core ``Room`` driven by real peer connections: negotiation, fan-out, cleanup.

The forwarding path is: aiortc decrypts and parses → ``MediaPeer`` tap →
``Room.on_rtp`` (accounting, role/mute enforcement, routing lookup) → for each
target slot stream one ``Forwarder.rewrite`` → each of the stream's sinks (SRTP
protect into the shared socket's send batch; one ``sendmmsg`` per event-loop
pass, ``sfu/rtc/sendmmsg.py``).  No decode, no encode, no task per packet, and
no header work per listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc.rtp import RtpPacket

from sfu.activity import ActivityObserver
from sfu.config import MediaConfig
from sfu.errors import MediaError, MediaErrorKind
from sfu.events import RouterEvent
from sfu.loss import audience_loss
from sfu.mixer import MediaMode, MediaModeState
from sfu.preroll import Preroll
from sfu.red import RedEncoder, RedReceiver
from sfu.room import Room
from sfu.rtc.levels import PcmDecoder
from sfu.rtc.mixing import MixingEngine
from sfu.rtc.peer import MediaPeer
from sfu.rtc.reclaim import reclaimer
from sfu.rtc.sendmmsg import write_all
from sfu.rtc.setup import rtc_configuration
from sfu.rtc.stats import uplink_samples
from sfu.rtc.udp_mux import UdpMux
from sfu.slots import ArrivalOrderPolicy, Layout, LoudestPolicy, SlotPolicy
from sfu.stats import DropReason, DurationHistogram, MediaStats
from sfu.streams import SlotStream

logger = logging.getLogger(__name__)

PREROLL_PACKETS = 8  # 160 ms of 20 ms packets: more than a tick's worth
Held = tuple[int, int, bool, bytes, int | None]  # sequence, timestamp, marker, payload, level

EventHandler = Callable[[RouterEvent], None]
PeerLostHandler = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class MediaRoomSetup:
    """What a room's media is built from, whichever kind of node serves it."""

    room_id: str
    config: MediaConfig
    on_event: EventHandler
    on_peer_lost: PeerLostHandler
    udp: UdpMux | None = None


class MediaRoom:
    """One room's media, behind the narrow API the signaling layer uses (its ``MediaFacade``).

    Everything else here (peers, the core room, the mixing engine) is the adapter's own.
    """

    def __init__(self, setup: MediaRoomSetup) -> None:
        config, on_event = setup.config, setup.on_event
        policy: SlotPolicy = (
            LoudestPolicy(hold=config.speaker_hold)
            if config.slot_policy == "loudest"
            else ArrivalOrderPolicy()
        )
        observer = ActivityObserver(speaking_interval=config.speaking_interval)
        self.room = Room(setup.room_id, policy, observer, slots=config.slots)
        self.config = config
        self.peers: dict[str, MediaPeer] = {}
        self.stats: Counter[str] = Counter()
        self.forward_time = DurationHistogram()  # one fan-out per inbound packet
        self._decoders: dict[str, PcmDecoder] = {}
        self._red_uplinks: dict[str, RedReceiver] = {}  # speakers whose uplink is RED
        self._red_encoders: dict[str, RedEncoder] = {}  # per source: RED for RED subscribers
        self._on_event = on_event
        self._on_peer_lost = setup.on_peer_lost
        self._udp = setup.udp
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Future[None]] = set()  # peers dropped by _drop_peer
        self.mixing = MixingEngine(self.room, config, self._fanout, on_event)
        # A talk spurt's first packets, until the slot policy routes its speaker (sfu.preroll).
        self._preroll: Preroll[Held] = Preroll(2 * config.tick_interval, PREROLL_PACKETS)

    # -- membership (called by the session layer) ------------------------
    def join(self, participant_id: str, may_publish: bool) -> None:
        self.room.join(participant_id, may_publish, time.monotonic())
        self._deliver()

    async def connect(self, participant_id: str, offer_sdp: str, ice_restart: bool = False) -> str:
        """Answer ``participant_id``'s offer; raises MediaError.

        An offer from a participant that has a peer connection already replaces it
        (a client whose media path died starts a new one): its slots keep their
        sources, its uplink its place.  An ICE restart (``ice_restart``) is answered on
        the current peer connection instead (``MediaPeer.restart_ice``): only its ICE
        credentials change.
        """
        if participant_id not in self.room.participants:
            raise MediaError(MediaErrorKind.INVALID_STATE, "not in the room")
        if ice_restart:
            current = self.peers.get(participant_id)
            restarted = current.restart_ice(offer_sdp) if current is not None else None
            if restarted is None:
                raise MediaError(
                    MediaErrorKind.INVALID_STATE,
                    "no peer connection to restart ICE on: offer a new one",
                )
            self.stats["ice_restarts"] += 1
            return restarted
        await self._close_peer(participant_id)

        async def handle_rtp(packet: RtpPacket) -> None:
            await self._forward(participant_id, packet)

        async def handle_state(state: str) -> None:
            current = self.peers.get(participant_id)
            if current is not None and current is this():  # not a replaced one
                await self._peer_state(participant_id, state)

        def heard_loss() -> float:
            return self._audience_loss(participant_id)

        peer = MediaPeer(
            participant_id,
            rtc_configuration(),
            handle_rtp,
            handle_state,
            self._udp,
            heard_loss if self.config.loss_feedback else None,
        )
        this = weakref.ref(peer)  # handle_state is the peer's: a strong reference is a cycle
        self.peers[participant_id] = peer
        try:
            negotiated = await peer.negotiate(
                offer_sdp, self.room.slot_ssrcs(self.config.slots), self.config.red
            )
        except BaseException:
            if self.peers.get(participant_id) is peer:
                del self.peers[participant_id]
            await peer.close()
            raise
        if self.peers.get(participant_id) is not peer:  # replaced while we negotiated
            await peer.close()
            raise MediaError(MediaErrorKind.INVALID_STATE, "a newer offer replaced this one")
        if participant_id not in self.room.participants:  # left while we negotiated
            await self._close_peer(participant_id)
            raise MediaError(MediaErrorKind.INVALID_STATE, "participant left during negotiation")
        if negotiated.uplink_red is not None:
            self._red_uplinks[participant_id] = RedReceiver(*negotiated.uplink_red)
        now = time.monotonic()
        self.room.attach_slots(participant_id, negotiated.formats, now)
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

    def reattach(self, participant_id: str) -> bool:
        """One process: the peer connection is where it was, whatever the socket did."""
        return False

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

    def layout(self, participant_id: str) -> Layout:
        participant = self.room.participants.get(participant_id)
        return participant.layout if participant is not None and participant.consumers else ()

    @property
    def media_mode(self) -> MediaModeState:
        return MediaModeState(self.mixing.mode, self.mixing.active)

    # -- recording ---------------------------------------------------------
    @property
    def recording(self) -> Path | None:
        """The file being recorded to, if any."""
        return self.mixing.recording.path if self.mixing.recording is not None else None

    def start_recording(self, path: Path) -> float:
        """Record the room's mix to ``path``; returns the wall-clock start. Raises OSError."""
        if self.mixing.recording is not None:
            raise MediaError(MediaErrorKind.ALREADY_RECORDING, "the room is being recorded")
        return self.mixing.start_recording(path).started_at

    def stop_recording(self) -> float:
        """Finish the file; returns its duration in seconds."""
        if self.mixing.recording is None:
            raise MediaError(MediaErrorKind.NOT_RECORDING, "the room is not being recorded")
        return self.mixing.stop_recording()

    async def leave(self, participant_id: str) -> None:
        self.room.leave(participant_id, time.monotonic())
        self._decoders.pop(participant_id, None)
        self._red_uplinks.pop(participant_id, None)
        self._red_encoders.pop(participant_id, None)
        self._preroll.forget(participant_id)
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
        reclaimer.watch(self)  # a room's parts refer to each other: the reclaimer frees them

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
        seq, ts, marker = packet.sequence_number, packet.timestamp, bool(packet.marker)
        red = self._red_uplinks.get(participant_id)
        if red is None:
            frames: list[tuple[int, int, bool, bytes]] = [(seq, ts, marker, payload)]
        else:  # RED: the Opus frames it carries, frames we lost recovered first
            try:
                unwrapped = red.push(seq, ts, packet.payload_type, payload)
            except ValueError:
                self.room.dropped[DropReason.BAD_RED] += 1
                return
            frames = [
                (f.sequence_number, f.timestamp, marker and not f.recovered, f.payload)
                for f in unwrapped
            ]
            stats["red_recovered"] += sum(f.recovered for f in unwrapped)
        routed = False
        for seq, ts, marker, payload in frames:
            targets = self.room.on_rtp(participant_id, level, len(payload), now)
            if level is None and payload and self.room.wants_pcm(participant_id):
                self._decode_for_levels(participant_id, payload, now)
            self.mixing.push(participant_id, seq, ts, payload, now)
            if not targets:
                if self.room.selectable(participant_id):  # not in a slot yet: keep the onset
                    held = (seq, ts, marker, payload, level)
                    self._preroll.hold(participant_id, seq, held, now)
                continue
            if self._preroll.pending(participant_id):
                await self._send_onset(participant_id, targets, seq, now)
            routed = True
            await self._fanout(participant_id, targets, seq, ts, marker, payload, level, now)
        if routed:
            self.forward_time.observe(time.perf_counter() - started)
        if self.room.has_events:  # an onset took a slot: tell its subscribers now
            self._deliver()

    async def _send_onset(
        self, source: str, targets: tuple[SlotStream, ...], seq: int, now: float
    ) -> None:
        """The held packets just before ``seq``, to the slots that now carry ``source``."""
        held = self._preroll.release(source, seq, now)
        for h_seq, h_ts, h_marker, h_payload, h_level in held:
            await self._fanout(source, targets, h_seq, h_ts, h_marker, h_payload, h_level, now)
        self.room.dropped[DropReason.NOT_SELECTED] -= len(
            held
        )  # counted at arrival; forwarded after all

    async def _fanout(
        self,
        source: str,
        targets: tuple[SlotStream, ...],
        seq: int,
        ts: int,
        marker: bool,
        payload: bytes,
        level: int | None,
        now: float,
    ) -> None:
        """Write one packet of ``source`` (a speaker, or a mix) to each of its slot streams:
        one header rewrite per stream (plain Opus, or RED: the frame and the ones before
        it, for streams whose subscribers negotiated it), then only each receiver's sink
        (SRTP + queue)."""
        stats = self.stats
        chunk = self.config.fanout_chunk
        sent = failed = 0
        red = self._red_encoders.get(source)
        if red is None:
            red = self._red_encoders[source] = RedEncoder(self.config.red_distance)
        red.push(seq, ts, payload)
        for stream in targets:
            sinks, patched = stream.sinks, stream.patched
            if not sinks and not patched:  # nobody's transport is up yet
                continue
            fwd = stream.forwarder
            red_pt = fwd.red_payload_type
            if red_pt is None:
                data = fwd.rewrite(source, seq, ts, marker, payload, level, now)
            else:
                red_payload = red.encode(fwd.payload_type)
                data = fwd.rewrite(source, seq, ts, marker, red_payload, level, now, red_pt)
            for start in range(0, len(sinks), chunk):
                if start:  # let the loop breathe inside a big audience
                    await asyncio.sleep(0)
                failed += write_all(data, sinks[start : start + chunk])
            for consumer in patched:  # moved between streams: their own numbering
                if consumer.sink is not None:
                    failed += write_all(consumer.patch(data), (consumer.sink,))
            sent += len(sinks) + len(patched)
        sent -= failed
        stats["packets_out"] += sent
        stats["bytes_out"] += sent * len(payload)
        if failed:
            self.room.dropped[DropReason.SEND_ERROR] += failed

    def _audience_loss(self, speaker: str) -> float:
        """What the listeners of ``speaker`` lose (``sfu.loss``), for its receiver reports."""
        losses = []
        for stream in self.room.routing.targets(speaker):
            for member in stream.members:
                peer = self.peers.get(member.subscriber_id)
                loss = None if peer is None else peer.downlink_loss(stream.forwarder.ssrc)
                if loss is not None:
                    losses.append(loss)
        return audience_loss(losses)

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
            self.room.set_sinks(participant_id, peer.attach_transport())
        elif state in ("failed", "closed"):
            await self._close_peer(participant_id)
            await self._on_peer_lost(participant_id, state)

    def _drop_peer(self, participant_id: str) -> None:
        """Forget a peer connection at once (no loss is reported for it); close it meanwhile."""
        peer = self.peers.pop(participant_id, None)
        if peer is not None:
            self.room.clear_sinks(participant_id)
            closing = asyncio.ensure_future(peer.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def _close_peer(self, participant_id: str) -> None:
        peer = self.peers.pop(participant_id, None)
        if peer is None:
            return
        self.room.clear_sinks(participant_id)  # its transport is gone: the fan-out skips it
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
        participants = self.room.participants
        for pid, peer in list(self.peers.items()):
            participant = participants.get(pid)
            if participant is not None:
                peer.send_sender_reports(now, participant.consumers)

    def get_stats(self) -> MediaStats:
        producers = consumers = 0
        for participant in self.room.participants.values():
            if participant.producer.has_uplink and participant.producer.allowed:
                producers += 1
            consumers += len(participant.consumers)
        peers = list(self.peers.values())
        return MediaStats(
            counters=self.stats,
            dropped=self.room.dropped,
            forward_time=self.forward_time,
            producers=producers,
            consumers=consumers,
            peer_states=tuple(peer.connection_state for peer in peers),
            uplinks=tuple(sample for peer in peers for sample in uplink_samples(peer.pc)),
            downlinks=tuple(report for peer in peers for report in peer.downlink_reports()),
        )

    def dump(self) -> dict[str, Any]:
        data = self.room.dump()
        data["peers"] = {pid: p.connection_state for pid, p in self.peers.items()}
        data["stats"] = dict(self.stats)
        data["red_uplinks"] = {pid: red.recovered for pid, red in self._red_uplinks.items()}
        data["mixing"] = self.mixing.dump()
        return data
