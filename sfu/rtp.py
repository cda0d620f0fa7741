"""RTP header build/parse for the forwarding path.

The forwarder never re-serialises aiortc's ``RtpPacket``: it writes a fresh
12-byte header (plus the audio-level extension when the subscriber negotiated
it) in one ``struct.pack`` and appends the untouched Opus payload.  Header
extension ids are negotiated per peer connection, so the publisher's
extension bytes cannot be copied through.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
OPUS_CLOCK_RATE = 48_000
PTIME = 0.02
"""Seconds of audio in one Opus packet as WebRTC stacks send it, and one mixer tick."""
FRAME_SAMPLES = OPUS_CLOCK_RATE * 20 // 1000
"""RTP timestamp units (48 kHz samples) in one ``PTIME``."""
SILENCE_LEVEL = 127  # RFC 6464: -127 dBov, i.e. digital silence

_HEADER = struct.Struct("!BBHII")
# Fixed header + one-byte-header extension block (RFC 8285): profile 0xBEDE,
# length 1 word, element (id, len-1 = 0), level byte, two padding bytes.
_HEADER_WITH_LEVEL = struct.Struct("!BBHIIHHBBH")
_ONE_BYTE_PROFILE = 0xBEDE


def build_header(
    payload_type: int,
    marker: bool,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    level_ext_id: int | None = None,
    level: int | None = None,
) -> bytes:
    """Return an RTP header; with ``level_ext_id`` and ``level`` it carries RFC 6464."""
    second = (0x80 if marker else 0) | payload_type
    if level_ext_id is None or level is None:
        return _HEADER.pack(0x80, second, sequence_number, timestamp, ssrc)
    return _HEADER_WITH_LEVEL.pack(
        0x90,
        second,
        sequence_number,
        timestamp,
        ssrc,
        _ONE_BYTE_PROFILE,
        1,
        level_ext_id << 4,
        level & 0x7F,
        0,
    )


@dataclass(frozen=True, slots=True)
class RtpHeader:
    payload_type: int
    marker: bool
    sequence_number: int
    timestamp: int
    ssrc: int
    payload_offset: int
    audio_level: int | None


def parse_header(data: bytes, level_ext_id: int | None = None) -> RtpHeader:
    """Parse a plain (decrypted) RTP packet header; raises ValueError on garbage.

    Used by tests and load-generator clients that count packets without aiortc.
    """
    if len(data) < 12 or data[0] >> 6 != 2:
        raise ValueError("not an RTP packet")
    first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
    offset = 12 + 4 * (first & 0x0F)
    level: int | None = None
    if first & 0x10:
        if len(data) < offset + 4:
            raise ValueError("truncated RTP header extension")
        profile, words = struct.unpack_from("!HH", data, offset)
        ext_start = offset + 4
        offset = ext_start + 4 * words
        if len(data) < offset:
            raise ValueError("truncated RTP header extension")
        if profile == _ONE_BYTE_PROFILE and level_ext_id is not None:
            level = _find_one_byte_element(data[ext_start:offset], level_ext_id)
    return RtpHeader(
        payload_type=second & 0x7F,
        marker=bool(second & 0x80),
        sequence_number=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload_offset=offset,
        audio_level=level,
    )


def _find_one_byte_element(block: bytes, ext_id: int) -> int | None:
    i = 0
    while i < len(block):
        byte = block[i]
        if byte == 0:  # padding
            i += 1
            continue
        element_id, length = byte >> 4, (byte & 0x0F) + 1
        if element_id == 15:
            break
        if element_id == ext_id:
            return block[i + 1] & 0x7F
        i += 1 + length
    return None
