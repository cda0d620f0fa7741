"""Receiver reports from subscribers, read without aiortc's general RTCP machinery.

Every subscriber reports on its slot streams about once a second (aiortc) or
every few seconds (libwebrtc): with thousands of listeners that is the busiest
inbound traffic a room has.  aiortc parses each compound packet into objects,
routes it through a set per packet and an async handler per sender; a
receiver report only needs its report blocks read.  Compounds carrying
anything a sender or receiver must act on (SR, BYE, NACK, PLI, REMB) are left
to aiortc: ``parse_receiver_reports`` returns None for them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE, RTCP_APP, RTCP_RTPFB, RTCP_PSFB, RTCP_XR = range(200, 208)
TRANSPORT_CC = 15  # RTPFB format: congestion-control feedback, nothing for an audio forwarder

_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IBBHIIII")  # ssrc, fraction lost, lost (24 bits), seq, jitter, lsr, dlsr
_BLOCK_BYTES = _BLOCK.size
_IGNORED = (RTCP_SDES, RTCP_APP, RTCP_XR)


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """RFC 3550 6.4.1: one receiver's view of one of our streams."""

    ssrc: int
    fraction_lost: int
    """Of 256, over the last report interval."""
    packets_lost: int
    highest_sequence: int
    jitter: int
    """In RTP timestamp units."""
    lsr: int
    """Middle 32 bits of the NTP time of the last SR it received from us (0: none)."""
    dlsr: int
    """Delay since that SR, in 1/65536 s."""


def parse_receiver_reports(data: bytes) -> list[ReportBlock] | None:
    """The report blocks of a compound of RRs (plus SDES/APP/XR/transport-cc), else None."""
    blocks: list[ReportBlock] = []
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < 4:
            return None
        first, packet_type, words = _HEADER.unpack_from(data, offset)
        size = 4 * (words + 1)
        if first >> 6 != 2 or offset + size > end:
            return None
        if packet_type == RTCP_RR:
            count = first & 0x1F
            if 8 + count * _BLOCK_BYTES > size:
                return None
            for i in range(count):
                ssrc, fraction, lost_hi, lost_lo, seq, jitter, lsr, dlsr = _BLOCK.unpack_from(
                    data, offset + 8 + i * _BLOCK_BYTES
                )
                lost = (lost_hi << 16) | lost_lo
                if lost & 0x800000:  # 24-bit two's complement (duplicates can make it < 0)
                    lost -= 0x1000000
                blocks.append(ReportBlock(ssrc, fraction, lost, seq, jitter, lsr, dlsr))
        elif not (
            packet_type in _IGNORED or (packet_type == RTCP_RTPFB and first & 0x1F == TRANSPORT_CC)
        ):
            return None
        offset += size
    return blocks
