"""The relay's packet format and its routing plan (sfu.relay, sans-I/O)."""

from __future__ import annotations

import pytest

from sfu.relay import RelayPacket, RelayPlan, RelayStreams, decode, encode, relay_delay
from sfu.rtp import parse_header


def packet(**overrides: object) -> RelayPacket:
    fields: dict[str, object] = {
        "room": "Salle Pleyel ✓",
        "source": "alice",
        "level": 33,
        "sequence_number": 65535,
        "timestamp": 0xFFFFFFF0,
        "marker": True,
        "payload": b"\xfc\x01opus",
        "sent_us": 123_456_789,
    }
    fields.update(overrides)
    return RelayPacket(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field_and_the_stream() -> None:
    original = packet()
    data = encode(original, ssrc=7)
    assert decode(data) == original
    assert parse_header(data).ssrc == 7
    assert decode(encode(packet(level=None, marker=False), 8)).level is None


def test_the_send_time_travels_modulo_2_32_microseconds() -> None:
    sent = (1 << 32) - 500  # just before the wrap
    assert decode(encode(packet(sent_us=sent + (5 << 32)), 1)).sent_us == sent
    assert relay_delay(sent, 1_000) == pytest.approx(0.0015)  # across the wrap
    assert relay_delay(2_000, 1_000) == pytest.approx(-0.001)  # a clock behind ours


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80" * 11,
        encode(packet(), 1)[:14],  # header, then half the names' lengths
        encode(packet(), 1)[:20],  # names cut short
        bytes([0x80, 111]) + encode(packet(), 1)[2:],  # an Opus packet, not a relayed one
        encode(packet(), 1).replace(b"alice", b"\xff\xfelic"),
    ],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode(data)


def test_one_stream_per_room_and_speaker_until_forgotten() -> None:
    streams = RelayStreams()
    a, b = streams.ssrc("r", "alice"), streams.ssrc("r", "bob")
    assert a != b and streams.ssrc("r", "alice") == a and streams.ssrc("r2", "alice") not in (a, b)
    streams.forget("r", "alice")
    assert streams.ssrc("r", "alice") not in (a, b)
    assert len(streams) == 3


def test_origin_sends_each_speaker_to_every_edge_but_its_own() -> None:
    plan = RelayPlan(origin=None)
    plan.place("bob", "B")
    plan.place("carol", "C")
    plan.place("carl", "C")
    assert plan.edges == ("B", "C")
    assert plan.targets("alice", routed=True) == ("B", "C")  # connected to the origin
    assert plan.targets("carol", routed=True) == ("B",)
    assert plan.targets("alice", routed=False) == ()
    assert plan.accepts("C", "carol") and not plan.accepts("B", "carol")
    assert not plan.accepts("C", "alice")  # nobody relays a speaker it does not serve
    assert plan.unplace("carol") == "C"
    assert plan.edges == ("B", "C")  # carl is still there
    plan.unplace("carl")
    assert list(plan.edges) == ["B"]


def test_edge_sends_its_own_speakers_upstream_only() -> None:
    plan = RelayPlan(origin="A")
    plan.relayed.add("alice")
    assert plan.targets("carol", routed=True) == ("A",)
    assert plan.targets("alice", routed=True) == ()  # came from the origin
    assert plan.accepts("A", "alice") and not plan.accepts("B", "alice")
