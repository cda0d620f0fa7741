"""Process-wide aiortc/aioice settings: announced host addresses and the Opus offer.

aioice has no per-connection option for which local addresses to gather, so
the addresses are set for the whole process (server and any in-process
clients alike); call ``configure`` once at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aioice.ice
import aiortc.rtp
import av
from aiortc import (
    RTCCertificate,
    RTCConfiguration,
    RTCDtlsFingerprint,
    RTCIceServer,
    RTCRtpCodecParameters,
)
from aiortc.codecs import CODECS
from aiortc.rtcdtlstransport import SRTPProtectionProfile
from aiortc.rtcrtpparameters import RTCRtcpFeedback
from OpenSSL import SSL

from sfu.levels import pcm_level
from sfu.red import RED_MIME
from sfu.rtp import OPUS_CLOCK_RATE

AUTO = "auto"  # in an address list: the machine's own interfaces, as aioice finds them
_machine_addresses = aioice.ice.get_host_addresses


class _Codec(RTCRtpCodecParameters):
    """aiortc deep-copies the codec for every m-line of every offer: 8 µs each by
    ``copy.deepcopy``, 1 µs this way (fields are strings, numbers and flat lists/dicts)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Codec:
        return _Codec(
            self.mimeType,
            self.clockRate,
            self.channels,
            self.payloadType,
            [RTCRtcpFeedback(f.type, f.parameter) for f in self.rtcpFeedback],
            dict(self.parameters),
        )


OPUS = _Codec(
    mimeType="audio/opus",
    clockRate=OPUS_CLOCK_RATE,
    channels=2,
    payloadType=111,
    parameters={"minptime": 10, "useinbandfec": 1, "usedtx": 1},
)
RED = _Codec(mimeType=RED_MIME, clockRate=OPUS_CLOCK_RATE, channels=2, payloadType=63)
"""RFC 2198 redundancy around Opus; its fmtp (``<opus>/<opus>``) is set per peer."""


def announce_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on exactly ``addresses`` (``"auto"`` = the interfaces)."""
    wanted = tuple(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        result: list[str] = []
        for address in wanted:
            found = _machine_addresses(use_ipv4, use_ipv6) if address == AUTO else [address]
            for a in found:
                if a not in result and (use_ipv6 if ":" in a else use_ipv4):
                    result.append(a)
        return result

    aioice.ice.get_host_addresses = host_addresses


def machine_addresses() -> list[str]:
    """This machine's interface addresses, whatever ``announce_addresses`` set."""
    return _machine_addresses(use_ipv4=True, use_ipv6=True)


def host_addresses() -> list[str]:
    """The addresses host candidates are gathered on (as ``announce_addresses`` set them)."""
    return aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)


def opus_and_red() -> None:
    """Negotiate Opus, with DTX and in-band FEC advertised (never transcoded), and RED
    carrying Opus where the peer offers it (Chrome does)."""
    CODECS["audio"][:] = [OPUS, RED]


def numpy_audio_level() -> None:
    """Replace aiortc's per-frame audio-level loop (1-2 ms of pure Python per 20 ms frame,
    on the event loop) with numpy; senders then put the same RFC 6464 level on packets."""

    def compute_audio_level_dbov(frame: av.AudioFrame) -> int:
        return -pcm_level(frame.to_ndarray())

    aiortc.rtp.compute_audio_level_dbov = compute_audio_level_dbov


class _SharedCertificate(RTCCertificate):
    """One DTLS certificate for the whole process, as mediasoup (per worker) and Janus do.

    aiortc makes a key pair and certificate for every peer connection and
    recomputes its fingerprints on every offer/answer: a join storm pays for
    both each time.  Renewed a day before it expires.
    """

    _current: _SharedCertificate | None = None
    _fingerprints: list[RTCDtlsFingerprint] | None = None
    _contexts: dict[tuple[bytes, ...], SSL.Context] | None = None

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        """One OpenSSL context per certificate (and SRTP profile list), not per connection:
        building one, certificate conversion included, was a tenth of a join's CPU."""
        if self._contexts is None:
            self._contexts = {}
        key = tuple(profile.openssl_profile for profile in srtp_profiles)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = super()._create_ssl_context(srtp_profiles)
            # An idle DTLS connection then holds no record buffers: 94 -> 76 KB each
            # after the handshake (measured with pyOpenSSL memory BIOs), per listener.
            context.set_mode(SSL.MODE_RELEASE_BUFFERS)
        return context

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:
        if self._fingerprints is None:
            self._fingerprints = super().getFingerprints()
        return self._fingerprints

    @classmethod
    def current(cls) -> _SharedCertificate:
        cert = cls._current
        if cert is None or cert.expires - datetime.now(UTC) < timedelta(days=1):
            fresh = _generate_certificate()
            cert = cls._current = cls(key=fresh._key, cert=fresh._cert)
        return cert


_generate_certificate = RTCCertificate.generateCertificate


def share_dtls_certificate() -> None:
    RTCCertificate.generateCertificate = classmethod(  # type: ignore[method-assign,assignment]
        lambda cls: _SharedCertificate.current()
    )


def configure(addresses: Sequence[str]) -> None:
    """The server's settings: Opus only, one certificate, host candidates on ``addresses``."""
    opus_and_red()
    share_dtls_certificate()
    announce_addresses(addresses)


def tune_client_process() -> None:
    """What a process of many Podium clients (a bot farm, a load generator) may want for
    every aiortc peer in it: Opus (and RED) only, one certificate, numpy audio levels."""
    opus_and_red()
    share_dtls_certificate()
    numpy_audio_level()


def rtc_configuration(ice_servers: Sequence[RTCIceServer] = ()) -> RTCConfiguration:
    """No public STUN server unless configured (aiortc's default is Google's)."""
    return RTCConfiguration(iceServers=list(ice_servers))
