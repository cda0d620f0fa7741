"""One participant's server-side peer connection: one uplink, K slot senders.

The client offers one send m-line (its microphone; a listener may leave it
without a track, so a later promotion needs no renegotiation) and K receive
m-lines (the slots).  Which speaker a slot carries is decided by the media
core and changes with no SDP at all: the slot's SSRC stays, its source moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.clock import current_ntp_time
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpSdesPacket, RtcpSenderInfo, RtcpSourceInfo, RtcpSrPacket

from sfu.consumer import Consumer
from sfu.errors import MediaError, MediaErrorKind
from sfu.red import RED_MIME
from sfu.rtc.answering import AnsweringPeerConnection
from sfu.rtc.reclaim import reclaimer, unlink
from sfu.rtc.tracks import (
    LossSource,
    ParkedTrack,
    RtpHandler,
    idle_sender,
    shed_unused,
    tap_receiver,
)
from sfu.rtc.udp_mux import MuxTransport, UdpMux, new_credentials
from sfu.rtcp import ReportBlock, parse_receiver_reports
from sfu.rtp import AUDIO_LEVEL_URI, OPUS_CLOCK_RATE
from sfu.stats import DownlinkReport
from sfu.streams import Sink, SlotFormat

RTT_SMOOTHING = 0.85  # weight of the previous estimate, as aiortc's senders smooth theirs
_SDP_ATTRIBUTE = re.compile(r"^a=(ice-ufrag|ice-pwd|fingerprint):(.*?)\r?$", re.MULTILINE)


def _ice_and_dtls(sdp: str) -> dict[str, str]:
    """The first ``ice-ufrag``, ``ice-pwd`` and ``fingerprint`` of an SDP (bundled: one each)."""
    found: dict[str, str] = {}
    for name, value in _SDP_ATTRIBUTE.findall(sdp):
        found.setdefault(name, value.strip())
    return found


@dataclass(frozen=True)
class Negotiated:
    answer_sdp: str
    formats: tuple[SlotFormat, ...]
    has_uplink: bool
    uplink_red: tuple[int, int] | None = None
    """(RED, Opus) payload types when the uplink negotiated RED."""


def _arrange_codecs(transceiver: RTCRtpTransceiver, red: bool) -> tuple[int, int | None]:
    """Answer Opus alone, or RED first then Opus: libwebrtc sends RED only when it leads
    the list.  Returns the (Opus, RED or None) payload types."""
    codecs = transceiver._codecs
    opus = next((c for c in codecs if c.mimeType.lower() == "audio/opus"), None)
    if opus is None or opus.payloadType is None:
        raise MediaError(MediaErrorKind.INVALID_OFFER, "the offer has no Opus")
    wrapper = next((c for c in codecs if c.mimeType.lower() == RED_MIME), None) if red else None
    if wrapper is None or wrapper.payloadType is None:
        transceiver._codecs = [opus]
        return opus.payloadType, None
    wrapper.parameters = {f"{opus.payloadType}/{opus.payloadType}": None}
    transceiver._codecs = [wrapper, opus]
    return opus.payloadType, wrapper.payloadType


def _level_ext_id(transceiver: RTCRtpTransceiver) -> int | None:
    for ext in transceiver._headerExtensions:
        if ext.uri == AUDIO_LEVEL_URI:
            return int(ext.id)
    return None


def _format(transceiver: RTCRtpTransceiver) -> SlotFormat:
    """The slot's stream format: plain Opus, or RED around it when RED leads the answer."""
    codecs = transceiver._codecs
    opus = codecs[-1].payloadType  # _arrange_codecs: [opus] or [red, opus]
    assert opus is not None  # set from the remote offer
    red = codecs[0].payloadType if len(codecs) > 1 else None
    return SlotFormat(opus, _level_ext_id(transceiver), red_payload_type=red)


class MediaPeer:
    def __init__(
        self,
        participant_id: str,
        configuration: RTCConfiguration,
        on_rtp: RtpHandler,
        on_state: Callable[[str], Awaitable[None]],
        mux: UdpMux | None = None,
        audience_loss: LossSource | None = None,
    ) -> None:
        self.participant_id = participant_id
        self._audience_loss = audience_loss
        self.pc = AnsweringPeerConnection(configuration)
        self._mux = mux
        self._on_rtp = on_rtp
        self._on_state = on_state
        self._slots: list[RTCRtpTransceiver] = []
        self._rtcp_sink: Sink | None = None
        self._reported: dict[int, int] = {}  # slot SSRC -> packet count in its last SR
        self._last_sr: dict[int, tuple[int, float]] = {}  # slot SSRC -> (NTP middle 32, time)
        self._downlink: dict[int, DownlinkReport] = {}  # slot SSRC -> its subscriber's report
        self._slot_ssrcs: frozenset[int] = frozenset()
        self._cname = f"podium-{participant_id}"
        self._remote: dict[str, str] = {}  # the offer's ICE credentials and DTLS fingerprint
        self.ice_restarts = 0
        self._followed: set[aioice.ice.Connection] = set()
        self._moved: asyncio.Future[None] | None = None
        self.pc.on("connectionstatechange", self._state_changed)
        self._open = True
        reclaimer.opened()

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    async def negotiate(
        self, offer_sdp: str, slot_ssrcs: Sequence[int], red: bool = True
    ) -> Negotiated:
        """Answer with at most ``len(slot_ssrcs)`` slots, slot i sending as ``slot_ssrcs[i]``
        (the room's: every subscriber's slot i carries byte-identical RTP); RED first
        wherever offered, when ``red``."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:  # aiortc raises ValueError, OperationError, KeyError, ...
            raise MediaError(MediaErrorKind.INVALID_OFFER, f"cannot apply offer: {exc}") from exc
        transceivers = self.pc.getTransceivers()
        if not transceivers:
            raise MediaError(MediaErrorKind.INVALID_OFFER, "the offer has no audio m-line")
        if self._mux is not None:  # one transport: aiortc bundles whatever was offered
            for ice in {t.receiver.transport.transport for t in transceivers}:
                self._mux.attach(ice.iceGatherer._connection)
        uplink: RTCRtpTransceiver | None = None
        uplink_red: tuple[int, int] | None = None
        for transceiver in transceivers:
            if transceiver.kind != "audio":
                raise MediaError(MediaErrorKind.INVALID_OFFER, "Podium rooms carry audio only")
            opus_pt, red_pt = _arrange_codecs(transceiver, red)
            offered = transceiver._offerDirection  # our side's direction, as offered
            if offered in ("recvonly", "sendrecv") and uplink is None:
                uplink = transceiver
                transceiver.direction = "recvonly"
                tap_receiver(transceiver.receiver, self._on_rtp, self._audience_loss)
                uplink_red = None if red_pt is None else (red_pt, opus_pt)
            elif offered == "sendonly" and len(self._slots) < len(slot_ssrcs):
                transceiver.direction = "sendonly"
                transceiver.sender.replaceTrack(ParkedTrack())  # signalled, never read
                idle_sender(transceiver.sender)  # send_sender_reports does its RTCP
                transceiver.sender._ssrc = slot_ssrcs[len(self._slots)]  # signalled in the answer
                self._slots.append(transceiver)
            else:
                transceiver.direction = "inactive"
            shed_unused(transceiver, receives=transceiver is uplink)
        self._slot_ssrcs = frozenset(t.sender._ssrc for t in self._slots)
        for dtls in {t.receiver.transport for t in transceivers}:
            self._read_receiver_reports(dtls)
        answer_sdp = await self.pc.answer()
        self._remote = _ice_and_dtls(offer_sdp)
        return Negotiated(
            answer_sdp=answer_sdp,
            formats=tuple(_format(t) for t in self._slots),
            has_uplink=uplink is not None,
            uplink_red=uplink_red,
        )

    def restart_ice(self, offer_sdp: str) -> str | None:
        """The answer to an ICE restart of this very connection, or None if the offer cannot
        be one (another DTLS fingerprint, the same ICE credentials, other m-lines, or the
        connection is closed).

        aiortc has no ICE restart: the ICE connection takes the offer's new remote
        credentials and draws new local ones, and the answer is the previous one with
        them. DTLS, SRTP keys and slots stay: only the client's checks must succeed again
        (from any address they come from) for media to flow.
        """
        local = self.pc.localDescription
        offered = _ice_and_dtls(offer_sdp)
        if (
            local is None
            or self.pc.connectionState == "closed"
            or len(offered) != 3
            or offered["fingerprint"] != self._remote.get("fingerprint")
            or offered["ice-ufrag"] == self._remote.get("ice-ufrag")
            or offer_sdp.count("\nm=") != local.sdp.count("\nm=")
        ):
            return None
        transceivers = self.pc.getTransceivers()
        for ice in {t.receiver.transport.transport for t in transceivers}:
            connection = ice.iceGatherer._connection
            if self._mux is not None:
                self._mux.renew(connection)
            else:
                new_credentials(connection)
            connection.remote_username = offered["ice-ufrag"]
            connection.remote_password = offered["ice-pwd"]
            self._follow_nomination(connection)
        ufrag, password = connection.local_username, connection.local_password
        self._remote = offered
        self.ice_restarts += 1
        answer = re.sub(r"^a=ice-ufrag:.*?(\r?)$", f"a=ice-ufrag:{ufrag}\\1", local.sdp, flags=re.M)
        return re.sub(r"^a=ice-pwd:.*?(\r?)$", f"a=ice-pwd:{password}\\1", answer, flags=re.M)

    def _follow_nomination(self, connection: aioice.ice.Connection) -> None:
        """After a restart the client may nominate a pair at another address (its network
        changed): aioice then sends there, and so must the sinks, which hold an address.
        The room is told the peer is connected again, and attaches new sinks."""
        if connection in self._followed:
            return
        self._followed.add(connection)
        complete = connection.check_complete

        def check_complete(pair: aioice.ice.CandidatePair) -> None:
            before = connection._nominated.get(pair.component)
            complete(pair)
            if connection._nominated.get(pair.component) is not before and self._open:
                self._moved = asyncio.ensure_future(self._state_changed())

        connection.check_complete = check_complete  # type: ignore[method-assign]

    def attach_transport(self) -> list[Sink]:
        """Once connected: egress writers for each slot (SRTP protect + sendto, no task)."""
        sinks = [_make_sink(t.sender.transport, rtcp=False) for t in self._slots]
        if self._slots:
            self._rtcp_sink = _make_sink(self._slots[0].sender.transport, rtcp=True)
        return sinks

    def send_sender_reports(self, now: float, slots: Sequence[Consumer]) -> None:
        """One compound RTCP packet: an SR for each slot that forwarded since the last one.

        Replaces aiortc's loop of one SR per slot per second, which costs as
        much again as forwarding when a room is quiet.
        """
        if self._rtcp_sink is None:
            return
        ntp = current_ntp_time()
        reports: list[RtcpSrPacket] = []
        for transceiver, slot in zip(self._slots, slots, strict=False):
            ssrc, packets = transceiver.sender._ssrc, slot.packets
            if self._reported.get(ssrc, 0) == packets:
                continue
            self._reported[ssrc] = packets
            info = RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=slot.rtp_timestamp_at(now),
                packet_count=packets & 0xFFFFFFFF,
                octet_count=slot.octets & 0xFFFFFFFF,
            )
            reports.append(RtcpSrPacket(ssrc=ssrc, sender_info=info))
        if not reports:
            return
        sent = ((ntp >> 16) & 0xFFFFFFFF, time.time())  # what a report's LSR field echoes
        for report in reports:
            self._last_sr[report.ssrc] = sent
        cname = self._cname.encode()
        sdes = RtcpSdesPacket(
            chunks=[RtcpSourceInfo(ssrc=r.ssrc, items=[(1, cname)]) for r in reports]
        )
        with contextlib.suppress(Exception):  # a transport that just died: nothing to report
            self._rtcp_sink(b"".join(bytes(r) for r in reports) + bytes(sdes))

    def _read_receiver_reports(self, dtls: RTCDtlsTransport) -> None:
        """Read subscribers' receiver reports ourselves (``sfu.rtcp``); aiortc gets the rest."""
        aiortc_handler = dtls._handle_rtcp_data

        async def handle_rtcp_data(data: bytes) -> None:
            blocks = parse_receiver_reports(data)
            if blocks is None:
                await aiortc_handler(data)
            else:
                self._receiver_reports(blocks, time.time())

        dtls._handle_rtcp_data = handle_rtcp_data  # type: ignore[method-assign]

    def _receiver_reports(self, blocks: list[ReportBlock], now: float) -> None:
        for block in blocks:
            if block.ssrc not in self._slot_ssrcs:  # about something else (e.g. its uplink)
                continue
            previous = self._downlink.get(block.ssrc)
            rtt = previous.rtt_s if previous is not None else None
            sent = self._last_sr.get(block.ssrc)
            if sent is not None and block.lsr == sent[0] and block.dlsr:
                sample = max(0.0, now - sent[1] - block.dlsr / 65536)
                rtt = sample if rtt is None else RTT_SMOOTHING * rtt + (1 - RTT_SMOOTHING) * sample
            self._downlink[block.ssrc] = DownlinkReport(
                fraction_lost=block.fraction_lost / 256,
                jitter_s=block.jitter / OPUS_CLOCK_RATE,
                rtt_s=rtt,
            )

    def downlink_loss(self, ssrc: int) -> float | None:
        """The share of packets lost in the latest report on slot stream ``ssrc``."""
        report = self._downlink.get(ssrc)
        return None if report is None else report.fraction_lost

    def downlink_reports(self) -> list[DownlinkReport]:
        """The latest receiver report about each slot stream this peer receives from us."""
        return list(self._downlink.values())

    async def _state_changed(self) -> None:
        await self._on_state(self.connection_state)

    async def close(self) -> None:
        await self.pc.close()
        if self._open:  # reference counting frees it once its cycles are broken
            self._open = False
            unlink(self.pc)
            reclaimer.closed(self.pc)


def _make_sink(dtls: RTCDtlsTransport, rtcp: bool) -> Sink:
    pair = dtls.transport._connection._nominated[1]
    transport = pair.protocol.transport
    addr = pair.remote_addr
    if not rtcp and isinstance(transport, MuxTransport) and transport.socket.batch is not None:
        return transport.socket.batch.srtp_writer(dtls._tx_srtp, addr)
    protect = dtls._tx_srtp.protect_rtcp if rtcp else dtls._tx_srtp.protect
    sendto = transport.sendto

    def sink(data: bytes) -> None:
        sendto(protect(data), addr)

    return sink
