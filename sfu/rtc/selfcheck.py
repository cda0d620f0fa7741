"""Start-up check of every aiortc/aioice internal the forwarding adapter relies on."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass


class SelfCheckError(RuntimeError):
    pass


@dataclass(frozen=True)
class Requirement:
    module: str
    owner: str  # class name, or "" for a module-level name
    name: str
    why: str
    instance: bool = False  # set in the owner's code as ``self.<name>``, not a class attribute


ANSWER = "answer an offer without re-parsing the answer (sfu/rtc/answering.py)"

REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "aiortc.rtcpeerconnection",
        "RTCPeerConnection",
        "_RTCPeerConnection__gather",
        ANSWER,
    ),
    Requirement(
        "aiortc.rtcpeerconnection",
        "RTCPeerConnection",
        "_RTCPeerConnection__remoteDescription",
        ANSWER,
    ),
    Requirement(
        "aiortc.rtcpeerconnection",
        "RTCPeerConnection",
        "_RTCPeerConnection__setSignalingState",
        ANSWER,
    ),
    Requirement(
        "aiortc.rtcpeerconnection",
        "RTCPeerConnection",
        "_RTCPeerConnection__connect",
        ANSWER,
    ),
    Requirement(
        "aiortc.rtcpeerconnection",
        "RTCPeerConnection",
        "__cname",
        ANSWER,
        instance=True,
    ),
    Requirement(
        "aiortc.rtcpeerconnection",
        "RTCPeerConnection",
        "__currentLocalDescription",
        ANSWER,
        instance=True,
    ),
    Requirement(
        "aiortc.rtcpeerconnection",
        "RTCPeerConnection",
        "__pendingLocalDescription",
        ANSWER,
        instance=True,
    ),
    Requirement("aiortc.rtcpeerconnection", "", "create_media_description_for_transceiver", ANSWER),
    Requirement("aiortc.rtcpeerconnection", "", "and_direction", ANSWER),
    Requirement("aiortc.rtcrtptransceiver", "RTCRtpTransceiver", "_setCurrentDirection", ANSWER),
    Requirement("aiortc.rtcdtlstransport", "RTCDtlsTransport", "_set_role", ANSWER),
    Requirement("aiortc.rtcdtlstransport", "RTCDtlsTransport", "_role", ANSWER, instance=True),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "RTCRtpReceiver",
        "_handle_rtp_packet",
        "tap decrypted RTP before the jitter buffer and decoder",
    ),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "RTCRtpReceiver",
        "__started",
        "start a receiver without its decoder thread",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "RTCRtpReceiver",
        "__rtcp_task",
        "start a receiver's RTCP reports without its decoder thread",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "RTCRtpReceiver",
        "_run_rtcp",
        "start a receiver's RTCP reports without its decoder thread",
    ),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "RTCRtpReceiver",
        "__rtcp_started",
        "park a receiver's RTCP loop until its first packet",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "RTCRtpReceiver",
        "__rtcp_exited",
        "park a receiver's RTCP loop until its first packet",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcdtlstransport",
        "RTCDtlsTransport",
        "_register_rtp_receiver",
        "route a started receiver's RTP to the tap",
    ),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "RTCRtpReceiver",
        "__remote_streams",
        "keep RTCP receiver reports truthful",
        instance=True,
    ),
    Requirement("aiortc.rtcrtpreceiver", "StreamStatistics", "add", "feed receiver reports"),
    Requirement(
        "aiortc.rtcdtlstransport",
        "RTCDtlsTransport",
        "_tx_srtp",
        "SRTP-protect forwarded packets",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcicetransport",
        "RTCIceTransport",
        "_connection",
        "reach the nominated ICE pair's socket",
        instance=True,
    ),
    Requirement("aioice.ice", "Connection", "_nominated", "find the nominated pair", instance=True),
    Requirement(
        "aioice.ice",
        "Connection",
        "_check_list",
        "break a closed connection's cycles (sfu/rtc/reclaim.py)",
        instance=True,
    ),
    Requirement(
        "aioice.ice",
        "Connection",
        "check_complete",
        "move a peer's sinks to the pair the client nominates after an ICE restart",
    ),
    Requirement("aioice.ice", "", "get_host_addresses", "announce configured host addresses"),
    Requirement(
        "aiortc.rtcrtpsender",
        "RTCRtpSender",
        "_run_rtcp",
        "replace per-slot RTCP loops with one report per peer",
    ),
    Requirement(
        "aiortc.rtcrtpsender",
        "RTCRtpSender",
        "__rtcp_started",
        "park a slot sender's RTCP loop",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtpsender",
        "RTCRtpSender",
        "__rtcp_exited",
        "park a slot sender's RTCP loop",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcdtlstransport",
        "RTCDtlsTransport",
        "_handle_rtcp_data",
        "read subscribers' receiver reports without aiortc's per-packet routing",
    ),
    Requirement(
        "aiortc.rtcrtpsender",
        "RTCRtpSender",
        "_ssrc",
        "give every subscriber's slot i the room's SSRC (byte-identical slot streams)",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtptransceiver",
        "RTCRtpTransceiver",
        "_offerDirection",
        "tell uplink from slot m-lines",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtptransceiver",
        "RTCRtpTransceiver",
        "_codecs",
        "learn each slot's payload type",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtptransceiver",
        "RTCRtpTransceiver",
        "_headerExtensions",
        "learn each slot's audio-level extension id",
        instance=True,
    ),
    Requirement("aiortc.codecs", "", "CODECS", "advertise Opus with DTX and in-band FEC, and RED"),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "StreamStatistics",
        "fraction_lost",
        "report listeners' loss to a speaker's encoder (tracks.ReportedStatistics)",
    ),
    Requirement(
        "aiortc.rtcrtpsender",
        "RTCRtpSender",
        "__encoder",
        "send RED from the Python client (tracks.send_red)",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "RTCRtpReceiver",
        "__decoder_queue",
        "drop a listener's unused decoder queues (memory)",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "RTCRtpReceiver",
        "__decoder_error",
        "drop a listener's unused decoder error flags (memory)",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtpreceiver",
        "RemoteStreamTrack",
        "_queue",
        "drop the unread queue of a receive track (memory)",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtpsender",
        "RTCRtpSender",
        "__rtp_started",
        "drop a never-started sender's RTP loop events (memory)",
        instance=True,
    ),
    Requirement(
        "aiortc.rtcrtpsender",
        "RTCRtpSender",
        "__rtp_exited",
        "drop a never-started sender's RTP loop events (memory)",
        instance=True,
    ),
    Requirement(
        "aioice.ice",
        "Connection",
        "get_component_candidates",
        "gather a connection's host candidates on the shared UDP port",
    ),
    Requirement(
        "aioice.ice",
        "Connection",
        "_protocols",
        "close a connection's shared-port protocols with it",
        instance=True,
    ),
    Requirement(
        "aioice.ice",
        "Connection",
        "_local_username",
        "give each connection a ufrag unique on the shared port",
        instance=True,
    ),
    Requirement(
        "aioice.ice",
        "Connection",
        "_local_password",
        "new ICE credentials for an ICE restart of a live connection",
        instance=True,
    ),
    Requirement(
        "pylibsrtp",
        "Session",
        "_srtp",
        "SRTP-protect forwarded packets in place, in the send batch",
        instance=True,
    ),
    Requirement("pylibsrtp._binding", "lib", "srtp_protect", "protect in place"),
    Requirement(
        "aiortc.rtcdtlstransport",
        "RTCCertificate",
        "_create_ssl_context",
        "share one OpenSSL context per certificate",
    ),
    Requirement(
        "aiortc.rtcdtlstransport",
        "RTCCertificate",
        "_cert",
        "share one DTLS certificate per process",
        instance=True,
    ),
)


def _present(req: Requirement) -> bool:
    try:
        module = importlib.import_module(req.module)
    except ImportError:
        return False
    if not req.owner:
        return hasattr(module, req.name)
    owner = getattr(module, req.owner, None)
    if owner is None:
        return False
    if not req.instance:
        return hasattr(owner, req.name)
    try:
        source = inspect.getsource(owner)
    except (OSError, TypeError):
        return False
    return f"self.{req.name} =" in source or f"self.{req.name}:" in source


def check() -> None:
    """Raise SelfCheckError naming every missing internal and what it is for."""
    missing = [r for r in REQUIREMENTS if not _present(r)]
    if missing:
        import aiortc

        lines = [
            f"  - {r.module}.{r.owner + '.' if r.owner else ''}{r.name} (to {r.why})"
            for r in missing
        ]
        raise SelfCheckError(
            f"aiortc {aiortc.__version__} lacks internals Podium's media adapter uses:\n"
            + "\n".join(lines)
            + "\nInstall the versions podium-sfu pins"
            " (aiortc 1.16.x, aioice 0.13.x, pylibsrtp 1.0.x)."
        )
