from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from sfu.rtp import AUDIO_LEVEL_URI, build_header, parse_header


def aiortc_parse(data: bytes, ext_id: int) -> RtpPacket:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(ext_id, AUDIO_LEVEL_URI)]
        )
    )
    return RtpPacket.parse(data, extensions)


def test_header_without_extension_round_trips_through_aiortc() -> None:
    data = build_header(111, True, 65535, 2**32 - 1, 0xDEADBEEF) + b"opus"
    packet = RtpPacket.parse(data)
    assert (packet.payload_type, packet.marker, packet.sequence_number) == (111, 1, 65535)
    assert (packet.timestamp, packet.ssrc, packet.payload) == (2**32 - 1, 0xDEADBEEF, b"opus")


def test_audio_level_extension_is_read_by_aiortc_and_by_us() -> None:
    data = build_header(96, False, 7, 960, 42, level_ext_id=3, level=33) + b"x"
    packet = aiortc_parse(data, 3)
    assert packet.extensions.audio_level == (False, 33)
    assert packet.payload == b"x"
    header = parse_header(data, level_ext_id=3)
    assert header.audio_level == 33 and data[header.payload_offset :] == b"x"


def test_parse_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_header(b"\x00" * 12)
    with pytest.raises(ValueError):
        parse_header(b"\x90" + b"\x00" * 11)  # extension bit, no extension
