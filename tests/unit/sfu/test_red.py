"""RFC 2198 RED: parsing, building, recovering lost primaries, server-side encoding."""

from __future__ import annotations

import pytest

from sfu.red import RedBlock, RedEncoder, RedReceiver, build_red, parse_red

OPUS, RED = 111, 63


def chrome_like(seq: int, previous: bytes | None) -> bytes:
    """What Chrome sends: frame ``seq`` with the previous frame as redundancy."""
    return build_red(OPUS, frame(seq), [(960, previous)] if previous else [])


def frame(seq: int) -> bytes:
    return bytes([0x78, seq & 0xFF]) + bytes(40)


def test_parse_and_build_round_trip_with_the_rfc_2198_layout() -> None:
    payload = build_red(OPUS, b"primary", [(1920, b"older"), (960, b"old")])
    # Two 4-byte headers (F=1, PT, 14-bit offset, 10-bit length), then F=0 + PT.
    assert payload[:4] == bytes([0x80 | OPUS]) + ((1920 << 10) | 5).to_bytes(3, "big")
    assert payload[8] == OPUS
    assert parse_red(payload) == (
        RedBlock(OPUS, 1920, b"older"),
        RedBlock(OPUS, 960, b"old"),
        RedBlock(OPUS, 0, b"primary"),
    )
    assert parse_red(build_red(OPUS, b"alone", [])) == (RedBlock(OPUS, 0, b"alone"),)


def test_blocks_red_cannot_describe_are_left_out() -> None:
    payload = build_red(OPUS, b"p", [(0x4000, b"too old"), (960, bytes(1024)), (960, b"")])
    assert parse_red(payload) == (RedBlock(OPUS, 0, b"p"),)


@pytest.mark.parametrize(
    "bad",
    [b"", bytes([0x80 | OPUS, 0, 0]), bytes([0x80 | OPUS, 0, 0x3C, 0x05, OPUS, 1, 2])],
)
def test_malformed_red_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse_red(bad)


def test_a_lost_primary_is_recovered_from_the_next_packet() -> None:
    receiver = RedReceiver(RED, OPUS)
    got = []
    for seq in range(100, 110):
        if seq in (103, 106, 107):  # 103 alone, then two in a row
            continue
        payload = chrome_like(seq, frame(seq - 1))
        got += receiver.push(seq, seq * 960, RED, payload)
    seqs = [(f.sequence_number, f.recovered) for f in got]
    # 103 comes back from 104's redundancy; of 106-107 only 107 (one block of redundancy).
    assert [s for s, _ in seqs] == [100, 101, 102, 103, 104, 105, 107, 108, 109]
    assert dict(seqs)[103] and dict(seqs)[107] and not dict(seqs)[104]
    assert all(f.payload == frame(f.sequence_number) for f in got)
    assert all(f.timestamp == f.sequence_number * 960 for f in got)
    assert receiver.recovered == 2


def test_a_late_duplicate_of_a_recovered_frame_is_dropped_and_wraparound_works() -> None:
    receiver = RedReceiver(RED, OPUS)
    receiver.push(0xFFFE, 5, RED, chrome_like(0xFFFE, None))
    recovered = receiver.push(0, 5 + 1920, RED, build_red(OPUS, frame(0), [(960, frame(0xFFFF))]))
    assert [(f.sequence_number, f.timestamp, f.recovered) for f in recovered] == [
        (0xFFFF, 5 + 960, True),
        (0, 5 + 1920, False),
    ]
    assert receiver.push(0xFFFF, 5 + 960, RED, chrome_like(0xFFFF, None)) == []


def test_plain_packets_pass_and_other_payload_types_are_not_audio() -> None:
    receiver = RedReceiver(RED, OPUS)
    assert [f.payload for f in receiver.push(1, 960, OPUS, b"plain")] == [b"plain"]
    comfort_noise = build_red(13, b"cn", [])
    assert receiver.push(2, 1920, RED, comfort_noise) == []


def test_encoder_sends_each_frame_with_the_frames_before_it_and_restarts_after_a_gap() -> None:
    encoder = RedEncoder(distance=2)
    encoder.push(10, 9600, b"a")
    assert parse_red(encoder.encode(OPUS)) == (RedBlock(OPUS, 0, b"a"),)
    encoder.push(11, 10560, b"b")
    encoder.push(12, 11520, b"c")
    assert parse_red(encoder.encode(OPUS)) == (
        RedBlock(OPUS, 1920, b"a"),
        RedBlock(OPUS, 960, b"b"),
        RedBlock(OPUS, 0, b"c"),
    )
    assert encoder.encode(OPUS) is encoder.encode(OPUS)  # built once for all subscribers
    assert parse_red(encoder.encode(109))[0].payload_type == 109  # another peer's Opus PT
    encoder.push(14, 13440, b"e")  # 13 never came: no redundancy to vouch for
    assert parse_red(encoder.encode(OPUS)) == (RedBlock(OPUS, 0, b"e"),)
