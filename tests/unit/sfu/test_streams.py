"""Slot streams in the sans-I/O core: who shares a stream, and numbering across moves."""

from __future__ import annotations

import itertools
import random

from sfu.mixer import MIX, Mixer, minus_source
from sfu.room import Room
from sfu.rtp import RtpHeader, parse_header
from sfu.streams import SlotFormat

OPUS = SlotFormat(111, level_ext_id=1)
RED = SlotFormat(111, level_ext_id=1, red_payload_type=63)


class Subscriber:
    """A subscriber's slots as the I/O layer would attach them: sinks that record."""

    def __init__(self, room: Room, pid: str, speaker: bool, now: float, fmt: SlotFormat = OPUS):
        self.got: list[list[bytes]] = [[] for _ in range(room.slots)]
        room.join(pid, speaker, now)
        room.attach_slots(pid, [fmt] * room.slots, now)
        room.set_sinks(pid, [slot.append for slot in self.got])
        room.set_uplink(pid, speaker, now)

    def headers(self, slot: int) -> list[RtpHeader]:
        return [parse_header(data) for data in self.got[slot]]


def send(room: Room, source: str, seq: int, now: float) -> int:
    """One packet of ``source`` through the room, delivered as the I/O layer does;
    returns the number of header rewrites it cost."""
    streams = room.on_rtp(source, 30, 60, now)
    for stream in streams:
        data = stream.forwarder.rewrite(source, seq, seq * 960, False, b"opus", 30, now)
        for sink in stream.sinks:
            sink(data)
        for consumer in stream.patched:
            assert consumer.sink is not None
            consumer.sink(consumer.patch(data))
    return len(streams)


def make_room() -> Room:
    return Room("r", slots=2, rng=random.Random(7))


def test_the_audience_shares_one_stream_per_slot_and_format() -> None:
    room = make_room()
    Subscriber(room, "s1", True, 0.0)
    listeners = [Subscriber(room, f"l{i}", False, 1.0) for i in range(3)]
    red = Subscriber(room, "r1", False, 1.0, RED)
    for seq in range(5):
        # One rewrite for the three listeners, one for the RED variant; s1 hears nobody.
        assert send(room, "s1", seq, 2.0 + seq * 0.02) == 2
    first = listeners[0].got[0]
    assert len(first) == 5 and all(ls.got[0] == first for ls in listeners)
    assert [h.sequence_number for h in red.headers(0)] != [
        h.sequence_number for h in listeners[0].headers(0)
    ]  # a variant is its own stream (same SSRC: the room's slot SSRC)
    assert {h.ssrc for h in red.headers(0)} == {h.ssrc for h in listeners[0].headers(0)}
    assert room.routing.entries == 4 and room.routing.streams == 2


def test_a_ranked_speaker_gets_a_personal_stream_that_never_carries_itself() -> None:
    room = make_room()
    Subscriber(room, "s1", True, 0.0)
    s2 = Subscriber(room, "s2", True, 0.0)
    listener = Subscriber(room, "l1", False, 0.0)
    assert room.participants["l1"].layout == ("s1", "s2")
    assert room.participants["s2"].layout[0] == "s1"
    for seq in range(3):
        send(room, "s1", seq, 1.0 + seq * 0.02)
        send(room, "s2", seq, 1.0 + seq * 0.02)
    assert len(listener.got[0]) == len(listener.got[1]) == 3
    assert len(s2.got[0]) == 3 and s2.got[1] == []  # s1 in slot 0, never itself


def test_new_sinks_for_a_live_transport_keep_its_counts_and_a_new_transport_restarts_them() -> None:
    room = make_room()
    Subscriber(room, "s1", True, 0.0)
    listener = Subscriber(room, "l1", False, 0.0)
    for seq in range(3):
        send(room, "s1", seq, 1.0 + seq * 0.02)
    consumer = room.participants["l1"].consumers[0]
    assert consumer.packets == 3
    moved: list[bytes] = []
    room.set_sinks("l1", [moved.append, None])  # the same transport on a new path
    send(room, "s1", 3, 1.06)
    assert consumer.packets == 4 and len(moved) == 1 and len(listener.got[0]) == 3
    assert parse_header(moved[0]).sequence_number == listener.headers(0)[-1].sequence_number + 1
    room.clear_sinks("l1")  # the transport is gone; a new one starts counting afresh
    room.set_sinks("l1", [moved.append, None])
    send(room, "s1", 4, 1.08)
    assert consumer.packets == 1


def test_moving_between_streams_keeps_the_numbering_and_flags_the_move() -> None:
    room = make_room()
    Subscriber(room, "s1", True, 0.0)
    s2 = Subscriber(room, "s2", True, 0.0)
    Subscriber(room, "l1", False, 0.0)
    for seq in range(10):  # the audience's stream and s2's personal one diverge
        send(room, "s1", seq, 1.0 + seq * 0.02)
        send(room, "s2", seq, 1.0 + seq * 0.02)
    room.set_publish_allowed("s2", False, 1.3)  # s2 leaves the stage: the audience's streams
    consumer = room.participants["s2"].consumers[0]
    assert consumer.stream is not None and consumer.stream.key.owner is None
    assert consumer in consumer.stream.patched
    for seq in range(10, 13):
        send(room, "s1", seq, 1.4 + (seq - 10) * 0.02)
    headers = s2.headers(0)
    seqs = [h.sequence_number for h in headers]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    assert [h.marker for h in headers[10:]] == [True, False, False]
    assert headers[10].timestamp - headers[9].timestamp >= 960
    assert consumer.packets == 13  # what it was sent, for its sender reports


def test_a_leaving_listener_leaves_its_stream_and_the_last_one_drops_it() -> None:
    room = make_room()
    Subscriber(room, "s1", True, 0.0)
    Subscriber(room, "l1", False, 0.0)
    Subscriber(room, "l2", False, 0.0)
    (stream,) = room.on_rtp("s1", 30, 60, 1.0)
    assert stream.receivers == 2
    room.leave("l1", 1.0)
    assert stream.receivers == 1 and room.on_rtp("s1", 30, 60, 1.1) == (stream,)
    room.leave("l2", 1.2)
    assert stream.key not in room.streams and room.on_rtp("s1", 30, 60, 1.3) == ()


def test_a_moved_subscriber_whose_offset_cleared_still_leaves_cleanly() -> None:
    room = make_room()
    Subscriber(room, "s1", True, 0.0)
    s2 = Subscriber(room, "s2", True, 0.0)
    Subscriber(room, "l1", False, 0.0)
    send(room, "s1", 0, 1.0)
    room.set_publish_allowed("s2", False, 1.1)
    consumer = room.participants["s2"].consumers[0]
    stream = consumer.stream
    assert stream is not None and consumer in stream.patched
    consumer.seq_delta = consumer.ts_delta = 0  # a move whose numbering happened to line up
    send(room, "s1", 1, 1.2)  # its marker goes out: nothing left to patch
    assert not consumer.offset and s2.headers(0)[-1].marker
    room.leave("s2", 1.3)
    assert consumer not in stream.patched and stream.receivers == 1


def test_a_mix_is_one_more_slot_stream_and_a_mixed_speaker_gets_its_mix_minus() -> None:
    room = make_room()
    Subscriber(room, "s1", True, 0.0)
    listeners = [Subscriber(room, f"l{i}", False, 0.0) for i in range(2)]
    (before,) = room.on_rtp("s1", 30, 60, 1.0)
    room.set_mixer(Mixer(speakers=2), 1.0)
    assert room.on_rtp("s1", 30, 60, 1.1) == ()  # mix mode: speakers go to the mixer
    (mix,) = room.routing.targets(MIX)
    assert mix is before and mix.receivers == 2  # the audience's slot-0 stream, now the mix
    assert [c.stream for c in (room.participants[f"l{i}"].consumers[0] for i in range(2))] == [
        mix,
        mix,
    ]
    (minus,) = room.routing.targets(minus_source("s1"))
    assert minus.key.owner == "s1" and minus.receivers == 1
    data = mix.forwarder.rewrite(MIX, 7, 7 * 960, False, b"mix", 30, 1.2)
    for sink in mix.sinks:
        sink(data)
    assert listeners[0].got[0][-1] == listeners[1].got[0][-1] == data
