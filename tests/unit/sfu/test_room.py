"""The sans-I/O media router: slots, roles and mutes enforced in routing."""

from __future__ import annotations

from sfu.events import SlotsChanged
from sfu.room import Room
from sfu.routing import RoutingTable
from sfu.rtp import parse_header
from sfu.slots import Ranking, assign_slots
from sfu.streams import SlotFormat, SlotStream


def formats(k: int = 3) -> list[SlotFormat]:
    return [SlotFormat(payload_type=111)] * k


def member(room: Room, pid: str, speaker: bool, now: float, k: int = 3) -> None:
    room.join(pid, speaker, now)
    room.attach_slots(pid, formats(k), now)
    room.set_uplink(pid, True, now)


def receivers(streams: tuple[SlotStream, ...]) -> set[tuple[str, int]]:
    return {(c.subscriber_id, c.slot) for s in streams for c in s.members}


def layouts(room: Room) -> dict[str, tuple[str | None, ...]]:
    return {pid: p.layout for pid, p in room.participants.items()}


def test_speakers_fill_slots_in_arrival_order_and_never_hear_themselves() -> None:
    room = Room("r")
    for i, pid in enumerate(["s1", "s2", "s3", "s4"]):
        member(room, pid, True, float(i))
    member(room, "l1", False, 10.0)
    got = layouts(room)
    assert got["l1"] == ("s1", "s2", "s3")
    assert got["s1"] == ("s2", "s3", "s4")  # the fourth speaker fills the slot s1 cannot use
    assert got["s4"] == ("s1", "s2", "s3")
    for pid, layout in got.items():
        assert pid not in layout


def test_routing_snapshot_matches_layouts_and_drops_are_counted() -> None:
    room = Room("r")
    member(room, "s1", True, 0.0)
    member(room, "l1", False, 1.0)
    member(room, "l2", False, 2.0)
    targets = room.on_rtp("s1", 20, 100, 3.0)
    assert receivers(targets) == {("l1", 0), ("l2", 0)}
    assert len(targets) == 1  # the two listeners share one stream
    assert room.on_rtp("l1", 20, 100, 3.0) == ()  # a listener's RTP is never forwarded
    assert room.dropped["not_allowed"] == 1
    assert room.participants["s1"].producer.audio_level == 20


def test_mute_and_demotion_take_effect_on_the_next_packet() -> None:
    room = Room("r")
    member(room, "s1", True, 0.0)
    member(room, "l1", False, 1.0)
    room.set_muted("s1", True, 2.0)
    assert room.on_rtp("s1", None, 10, 2.0) == () and room.dropped["muted"] == 1
    assert layouts(room)["l1"] == (None, None, None)
    room.set_muted("s1", False, 3.0)
    assert len(room.on_rtp("s1", None, 10, 3.0)) == 1
    room.set_publish_allowed("s1", False, 4.0)
    assert room.on_rtp("s1", None, 10, 4.0) == ()


def test_promoted_listener_joins_the_stage_at_the_end() -> None:
    room = Room("r")
    member(room, "s1", True, 0.0)
    member(room, "l1", False, 1.0)
    member(room, "l2", False, 2.0)
    room.set_publish_allowed("l1", True, 5.0)
    assert layouts(room)["l2"] == ("s1", "l1", None)
    assert layouts(room)["s1"] == ("l1", None, None)


def test_leave_releases_routes_and_emits_slot_events() -> None:
    room = Room("r")
    member(room, "s1", True, 0.0)
    member(room, "l1", False, 1.0)
    while room.next_event() is not None:
        pass
    assert room.routing.entries == 1
    room.leave("s1", 2.0)
    assert room.routing.entries == 0
    assert room.next_event() == SlotsChanged("l1", (None, None, None))
    room.leave("l1", 3.0)
    assert room.participants == {} and room.routing.entries == 0


def test_no_uplink_means_no_slot() -> None:
    room = Room("r")
    room.join("s1", True, 0.0)
    room.attach_slots("s1", formats(), 0.0)
    member(room, "l1", False, 1.0)
    assert layouts(room)["l1"] == (None, None, None)
    room.set_uplink("s1", True, 2.0)
    assert layouts(room)["l1"] == ("s1", None, None)


def test_assign_slots_keeps_incumbents_in_place() -> None:
    assert assign_slots(("b", None, "a"), Ranking(("a", "c", "b")), None) == ("b", "c", "a")
    assert assign_slots(("b", "d", "a"), Ranking(("a", "c")), None) == ("c", None, "a")
    assert assign_slots((None, None), Ranking(("x", "y", "z")), "x") == ("y", "z")


def test_keep_only_producers_keep_their_slot_but_take_no_other() -> None:
    ranking = Ranking(("a", "b", "c"), keep_only=frozenset({"b", "c"}))
    assert assign_slots(("c", None, None), ranking, None) == ("c", "a", None)


def test_routing_table_snapshot_is_immutable() -> None:
    room = Room("r")
    member(room, "s1", True, 0.0)
    member(room, "l1", False, 1.0)
    snapshot = room.routing.targets("s1")
    member(room, "s2", True, 2.0)
    assert len(snapshot) == 1 and len(room.routing.targets("s1")) == 2  # + s2's own stream
    assert RoutingTable().targets("nobody") == ()


def test_a_leaving_listener_leaves_the_routing_table() -> None:
    room = Room("r")
    member(room, "s1", True, 0.0)
    member(room, "l1", False, 1.0)
    member(room, "l2", False, 2.0)
    room.leave("l1", 3.0)
    assert receivers(room.on_rtp("s1", None, 10, 4.0)) == {("l2", 0)}


def test_a_slot_that_loses_and_regains_its_speaker_resyncs_its_forwarder() -> None:
    room = Room("r")
    member(room, "s1", True, 0.0)
    member(room, "l1", False, 1.0)
    slot = room.participants["l1"].consumers[0]
    forwarder = slot.forwarder
    assert forwarder is not None
    forwarder.rewrite("s1", 100, 0, False, b"x", None, 1.0)
    room.set_muted("s1", True, 2.0)
    assert forwarder.source is None
    room.set_muted("s1", False, 3.0)
    data = forwarder.rewrite("s1", 150, 48000, False, b"x", None, 3.0)
    assert (data[2] << 8 | data[3]) == (forwarder.initial_sequence + 1) & 0xFFFF


def test_a_speakers_new_uplink_continues_its_listeners_streams() -> None:
    """A speaker's new peer connection (its media path died) starts its sequence numbers
    and timestamps anywhere: its listeners' streams must run on from where they were."""
    room = Room("r")
    member(room, "s1", True, 0.0)
    member(room, "l1", False, 1.0)
    (stream,) = room.on_rtp("s1", None, 10, 2.0)
    before = parse_header(stream.forwarder.rewrite("s1", 100, 960, False, b"x", None, 2.0))
    room.attach_slots("s1", formats(), 5.0)  # the new peer connection
    room.set_uplink("s1", True, 5.0)
    (stream,) = room.on_rtp("s1", None, 10, 5.0)
    after = parse_header(stream.forwarder.rewrite("s1", 40_100, 7_000_000, False, b"x", None, 5.0))
    assert after.sequence_number == (before.sequence_number + 1) & 0xFFFF
    assert 0 < (after.timestamp - before.timestamp) % 2**32 <= 3 * 48_000
