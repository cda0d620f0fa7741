"""Receiver tap, parked and idle senders, RED: shared by the server and the Python client."""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Awaitable, Callable

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpTransceiver
from aiortc.codecs.base import Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtpPacket

from sfu.loss import fraction_lost_byte
from sfu.red import RED_MIME, RedEncoder
from sfu.rtp import FRAME_SAMPLES, OPUS_CLOCK_RATE

RtpHandler = Callable[[RtpPacket], Awaitable[None]]
LossSource = Callable[[], float]


class ReportedStatistics(StreamStatistics):
    """An uplink's statistics whose receiver reports tell the sender at least the loss
    ``audience_loss()`` returns (``sfu.loss``: what its listeners lose), so that its
    Opus encoder plans in-band FEC for them."""

    def __init__(self, clockrate: int, audience_loss: LossSource) -> None:
        super().__init__(clockrate)
        self._audience_loss = audience_loss

    @property
    def fraction_lost(self) -> int:
        return fraction_lost_byte(super().fraction_lost, self._audience_loss())


def tap_receiver(
    receiver: RTCRtpReceiver, on_rtp: RtpHandler, audience_loss: LossSource | None = None
) -> None:
    """Hand decrypted, parsed packets to ``on_rtp`` instead of the jitter buffer.

    The receiver is started without its decoder thread (aiortc would start
    one per receiver, and stopping it joins the thread on the event loop),
    and the statistics behind its RTCP receiver reports are still fed, so the
    remote sender keeps getting truthful loss/jitter reports.  Its RTCP loop
    sleeps until the first packet: a listener's unused uplink would otherwise
    wake the server about once a second for nothing to report.  With
    ``audience_loss`` the reports' fraction lost is at least what it returns.
    """
    streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    first_packet: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    park_rtcp(receiver, first_packet)

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        stats = streams.get(packet.ssrc)
        if stats is None:
            stats = streams[packet.ssrc] = (
                StreamStatistics(OPUS_CLOCK_RATE)
                if audience_loss is None
                else ReportedStatistics(OPUS_CLOCK_RATE, audience_loss)
            )
            if not first_packet.done():
                first_packet.set_result(None)
        stats.add(packet)
        await on_rtp(packet)

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        """``RTCRtpReceiver.receive`` less the codec table and the decoder thread."""
        if receiver._RTCRtpReceiver__started:  # type: ignore[attr-defined]
            return
        receiver.transport._register_rtp_receiver(receiver, parameters)
        receiver._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(receiver._run_rtcp())  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__started = True  # type: ignore[attr-defined]

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]
    receiver.receive = receive  # type: ignore[method-assign]


def park_rtcp(
    endpoint: RTCRtpSender | RTCRtpReceiver, resume: asyncio.Future[None] | None = None
) -> None:
    """Keep aiortc's RTCP loop of ``endpoint`` idle (until ``resume`` is resolved).

    aiortc sends a report every second from every sender, even one that has
    sent nothing, and wakes every receiver as often: a server pays for each
    of those per listener.  Call before the endpoint starts (negotiation).
    """
    private = f"_{type(endpoint).__name__}__"  # aiortc's name-mangled attributes
    started: asyncio.Event = getattr(endpoint, private + "rtcp_started")
    exited: asyncio.Event = getattr(endpoint, private + "rtcp_exited")
    run = endpoint._run_rtcp

    async def parked() -> None:
        started.set()
        try:  # until resumed, or cancelled by stop(); shielded: stop() must not cancel ``resume``
            await asyncio.shield(resume or asyncio.get_running_loop().create_future())
        except BaseException:
            exited.set()
            raise
        await run()

    endpoint._run_rtcp = parked  # type: ignore[method-assign]


def idle_sender(sender: RTCRtpSender) -> None:
    """Never start ``sender``: the server's slot senders send nothing themselves.

    Forwarded packets bypass them and ``MediaPeer.send_sender_reports`` reports
    for them, so the RTP and RTCP tasks aiortc starts per sender (two per slot,
    per listener) would only hold memory and be woken at close.
    """

    async def send(parameters: RTCRtpSendParameters) -> None:
        pass

    sender.send = send  # type: ignore[method-assign]


class _NoDecoder:
    """Stands in for a receiver's decoder queue and error flag: no decoder thread runs."""

    def put(self, item: object) -> None:
        pass

    def is_set(self) -> bool:
        return False

    def clear(self) -> None:
        pass


_NO_DECODER = _NoDecoder()
_NEVER_SET = asyncio.Event()  # binds to a loop only if awaited, which nothing here does
_NEVER_FED: asyncio.Queue[object] = asyncio.Queue()


def shed_unused(transceiver: RTCRtpTransceiver, receives: bool) -> None:
    """Drop what aiortc builds per transceiver that the server never uses.

    Every listener has 1 + K transceivers, each with a receiver's decoder queue
    and error flag (a ``queue.Queue`` and a ``threading.Event``: locks and
    conditions), asyncio events for RTP/RTCP loops that never start (server
    senders never start, ``idle_sender``; nor do receivers of send-only slots)
    and a receive track's queue nobody reads: ≈ 40 KB of a listener's ≈ 230.
    Call after negotiation set the transceivers up, before they start.
    """
    receiver, sender = transceiver.receiver, transceiver.sender
    receiver._RTCRtpReceiver__decoder_queue = _NO_DECODER  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__decoder_error = _NO_DECODER  # type: ignore[attr-defined]
    if receiver.track is not None:
        receiver.track._queue = _NEVER_FED  # type: ignore[attr-defined]
    if not receives:
        receiver._RTCRtpReceiver__rtcp_started = _NEVER_SET  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__rtcp_exited = _NEVER_SET  # type: ignore[attr-defined]
    for name in ("rtp_started", "rtp_exited", "rtcp_started", "rtcp_exited"):
        setattr(sender, f"_RTCRtpSender__{name}", _NEVER_SET)


class RedOpusEncoder(Encoder):
    """aiortc's Opus encoder with its packets wrapped in RED (RFC 2198) around the previous
    frame, as Chrome sends them, once the answer put RED first (plain Opus otherwise).

    aiortc has no RED: ``send_red`` installs this as a sender's encoder.
    """

    def __init__(self, transceiver: RTCRtpTransceiver, distance: int = 1) -> None:
        self._opus = OpusEncoder()
        self._transceiver = transceiver
        self._red = RedEncoder(distance)
        self._packets = 0

    def encode(
        self, frame: av.frame.Frame, force_keyframe: bool = False
    ) -> tuple[list[bytes], int]:
        payloads, timestamp = self._opus.encode(frame, force_keyframe)
        codecs = self._transceiver._codecs
        if not payloads or len(codecs) < 2 or codecs[0].mimeType.lower() != RED_MIME:
            return payloads, timestamp
        opus_pt = codecs[1].payloadType
        assert opus_pt is not None
        wrapped = []
        for payload in payloads:
            self._red.push(self._packets & 0xFFFF, timestamp, payload)
            self._packets += 1
            wrapped.append(self._red.encode(opus_pt))
        return wrapped, timestamp

    def pack(self, packet: av.Packet) -> tuple[list[bytes], int]:  # type: ignore[type-arg]
        return self._opus.pack(packet)


def send_red(transceiver: RTCRtpTransceiver) -> None:
    """Make ``transceiver``'s sender send RED where negotiated (before it starts)."""
    transceiver.sender._RTCRtpSender__encoder = RedOpusEncoder(transceiver)  # type: ignore[attr-defined]


class ParkedTrack(MediaStreamTrack):
    """A send track that produces nothing until released.

    aiortc's sender polls every 20 ms when it has no track; parked on this one
    it sleeps.  ``release()`` lets one 20 ms silent frame through so the
    sender's loop moves on to a track installed with ``replaceTrack`` (the
    server's slot senders hold one only so that the answer signals a track:
    ``idle_sender`` never reads it).
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def release(self) -> None:
        if not self._wake.done():
            self._wake.set_result(None)

    async def recv(self) -> av.AudioFrame:
        try:
            await self._wake
        except asyncio.CancelledError:
            raise
        if self.readyState != "live":
            raise MediaStreamError
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, FRAME_SAMPLES), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = OPUS_CLOCK_RATE
        frame.pts = 0
        frame.time_base = fractions.Fraction(1, OPUS_CLOCK_RATE)
        return frame

    def stop(self) -> None:
        if not self._wake.done():
            self._wake.cancel()
        super().stop()
