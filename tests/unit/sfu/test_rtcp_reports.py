"""sfu.rtcp reads receiver reports as aiortc writes them, and leaves the rest to aiortc."""

from __future__ import annotations

import struct

from aiortc.rtp import (
    RtcpByePacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)

from sfu.rtcp import ReportBlock, parse_receiver_reports


def info(ssrc: int, lost: int = 3, lsr: int = 0x12345678) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(
        ssrc=ssrc,
        fraction_lost=25,
        packets_lost=lost,
        highest_sequence=70_000,
        jitter=480,
        lsr=lsr,
        dlsr=65536 // 2,
    )


def test_report_blocks_of_a_receiver_report() -> None:
    data = bytes(RtcpRrPacket(ssrc=1, reports=[info(10), info(11, lost=-2, lsr=0)]))
    assert parse_receiver_reports(data) == [
        ReportBlock(10, 25, 3, 70_000, 480, 0x12345678, 32768),
        ReportBlock(11, 25, -2, 70_000, 480, 0, 32768),  # 24-bit two's complement
    ]


def test_compounds_with_sdes_and_congestion_feedback_are_still_ours() -> None:
    sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=1, items=[(1, b"cname")])])
    tcc = RtcpRtpfbPacket(fmt=15, ssrc=1, media_ssrc=10)
    data = bytes(RtcpRrPacket(ssrc=1, reports=[info(10)])) + bytes(sdes) + bytes(tcc)
    blocks = parse_receiver_reports(data)
    assert blocks is not None and [b.ssrc for b in blocks] == [10]
    assert parse_receiver_reports(bytes(RtcpRrPacket(ssrc=1, reports=[]))) == []


def test_what_aiortc_must_act_on_is_left_to_it() -> None:
    sender_info = RtcpSenderInfo(ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4)
    rr = bytes(RtcpRrPacket(ssrc=1, reports=[info(10)]))
    for other in (
        RtcpSrPacket(ssrc=1, sender_info=sender_info, reports=[info(10)]),  # a publisher's SR
        RtcpByePacket(sources=[1]),
        RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=10, lost=[5]),  # NACK
    ):
        assert parse_receiver_reports(rr + bytes(other)) is None


def test_malformed_compounds_are_refused() -> None:
    rr = bytes(RtcpRrPacket(ssrc=1, reports=[info(10)]))
    assert parse_receiver_reports(rr[:-4]) is None  # truncated block
    assert parse_receiver_reports(rr + b"\x80") is None  # trailing garbage
    assert parse_receiver_reports(b"\x00" + rr[1:]) is None  # not version 2
    lying = bytearray(rr)
    lying[0] = 0x80 | 5  # claims 5 blocks in a packet sized for one
    assert parse_receiver_reports(bytes(lying)) is None
    assert parse_receiver_reports(struct.pack("!BBH", 0x80, 201, 200)) is None  # length overruns
