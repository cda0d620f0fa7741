"""A talk spurt's onset, held until its speaker gets a slot (sfu.preroll), end to end too."""

from __future__ import annotations

from sfu.mixer import Mixer
from sfu.preroll import Preroll
from sfu.room import Room
from signaling.server.server import PodiumServer
from tests.conftest import Connect, eventually
from tests.media import ToneTrack
from tests.rooms import media_of
from tests.unit.sfu.test_room import member


def test_released_packets_are_fresh_and_run_without_a_gap_up_to_the_routed_one() -> None:
    preroll: Preroll[str] = Preroll(max_age=0.1, capacity=3)
    for seq, at in ((10, 0.00), (11, 0.02), (12, 0.04), (13, 0.06)):
        preroll.hold("s", seq, f"p{seq}", at)
    assert preroll.release("s", 14, 0.08) == ["p11", "p12", "p13"]  # the newest 3, in order
    assert not preroll.pending("s")  # released once

    preroll.hold("s", 20, "p20", 1.00)
    preroll.hold("s", 22, "p22", 1.04)  # 21 never came (lost, or dropped for a mute)
    assert preroll.release("s", 23, 1.06) == ["p22"]  # nothing from before the gap
    preroll.hold("s", 30, "p30", 2.00)
    preroll.hold("s", 31, "p31", 2.05)
    assert preroll.release("s", 32, 2.12) == ["p31"]  # p30 is 120 ms old: stale
    preroll.hold("s", 40, "p40", 3.0)
    assert preroll.release("s", 45, 3.02) == []  # not contiguous with the routed packet
    preroll.hold("s", 0xFFFF, "last", 4.0)
    assert preroll.release("s", 0, 4.02) == ["last"]  # across the sequence wrap
    preroll.hold("s", 50, "p50", 5.0)
    preroll.forget("s")
    assert preroll.release("s", 51, 5.02) == []


def test_only_packets_the_policy_may_still_route_are_selectable() -> None:
    room = Room("r")
    member(room, "s1", True, 0.0)
    member(room, "l1", False, 0.0)
    assert room.selectable("s1") and not room.selectable("l1")  # a listener never is
    assert not room.selectable("nobody")
    room.set_muted("s1", True, 1.0)
    assert not room.selectable("s1")  # a muted speaker's audio is never sent late
    room.set_muted("s1", False, 2.0)
    room.set_mixer(Mixer(speakers=2), 3.0)
    assert not room.selectable("s1")  # mix mode: the mixer has its own buffer


async def test_every_listener_gets_the_speakers_first_packet(
    server: PodiumServer, connect: Connect
) -> None:
    """Listeners in first, then a speaker starts talking: before it is in their slots (one
    slot-policy tick) its packets had no route; now they are all delivered, in order."""
    received: dict[str, list[int]] = {"l0": [], "l1": []}
    for name, seqs in received.items():
        await connect(
            name, on_packet=lambda _slot, packet, seqs=seqs: seqs.append(packet.sequence_number)
        )
    speaker = await connect("alice", "speaker", publish=ToneTrack(440))
    room = media_of(server.rooms["room1"])
    producer = room.room.participants["alice"].producer
    await eventually(lambda: producer.packets >= 50)
    await speaker.close()  # its last packets are in: nothing arrives after the close
    sent = producer.packets
    await eventually(lambda: all(len(seqs) == sent for seqs in received.values()), timeout=5)
    for seqs in received.values():
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(sent)]  # in order, no gap
    assert room.room.dropped["not_selected"] == 0
