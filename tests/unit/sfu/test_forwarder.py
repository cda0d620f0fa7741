from __future__ import annotations

from sfu.forwarder import Forwarder
from sfu.rtp import parse_header


def fwd() -> Forwarder:
    return Forwarder(ssrc=1234, payload_type=111, initial_sequence=100, initial_timestamp=5000)


def out(f: Forwarder, src: str, seq: int, ts: int, now: float, marker: bool = False):  # type: ignore[no-untyped-def]
    return parse_header(f.rewrite(src, seq, ts, marker, b"p", None, now))


def test_first_packet_uses_initial_numbers_and_marker() -> None:
    h = out(fwd(), "a", 40000, 123456, 0.0)
    assert (h.ssrc, h.payload_type, h.sequence_number, h.timestamp, h.marker) == (
        1234,
        111,
        100,
        5000,
        True,
    )


def test_same_source_preserves_gaps_and_dtx_jumps() -> None:
    f = fwd()
    out(f, "a", 10, 1000, 0.0)
    assert out(f, "a", 11, 1960, 0.02).sequence_number == 101
    h = out(f, "a", 12, 1960 + 48000, 1.02)  # DTX: a second of silence not sent
    assert (h.sequence_number, h.timestamp, h.marker) == (102, 5000 + 960 + 48000, False)


def test_switch_is_continuous_with_elapsed_time_and_marker() -> None:
    f = fwd()
    out(f, "a", 10, 1000, 0.0)
    out(f, "a", 11, 1960, 0.02)
    h = out(f, "b", 60000, 999, 0.52)  # 0.5 s later, unrelated numbering
    assert h.sequence_number == 102
    assert h.timestamp == 5000 + 960 + 24000
    assert h.marker is True
    assert out(f, "b", 60001, 999 + 960, 0.54).sequence_number == 103
    assert f.switches == 1


def test_wraparound() -> None:
    f = Forwarder(ssrc=1, payload_type=96, initial_sequence=65535, initial_timestamp=2**32 - 960)
    out(f, "a", 0, 0, 0.0)
    h = out(f, "a", 1, 960, 0.02)
    assert (h.sequence_number, h.timestamp) == (0, 0)


def test_reordered_packet_does_not_move_continuity_point_back() -> None:
    f = fwd()
    out(f, "a", 10, 1000, 0.0)
    out(f, "a", 12, 2920, 0.04)
    late = out(f, "a", 11, 1960, 0.05)
    assert late.sequence_number == 101
    assert out(f, "b", 5, 5, 0.06).sequence_number == 103  # continues after 102, not 101


def test_level_extension_written_when_negotiated() -> None:
    f = Forwarder(ssrc=1, payload_type=96, level_ext_id=1)
    data = f.rewrite("a", 1, 1, False, b"p", 17, 0.0)
    assert parse_header(data, level_ext_id=1).audio_level == 17


def test_same_source_back_after_a_gap_continues_without_a_sequence_jump() -> None:
    f = fwd()
    out(f, "a", 10, 1000, 0.0)
    out(f, "a", 11, 1960, 0.02)
    f.detach()  # the slot lost "a" (not selected) while it sent 25 more packets
    h = out(f, "a", 37, 1960 + 26 * 960, 0.54)
    assert (h.sequence_number, h.marker) == (102, True)  # no 25-packet "loss"
    assert h.timestamp == 5000 + 960 + round(0.52 * 48000)
    assert f.switches == 1
