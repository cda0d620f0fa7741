"""Loudest-speaker routing on synthetic level sequences: no event loop, time passed in."""

from __future__ import annotations

from collections.abc import Callable

from sfu.activity import ActivityObserver, SpeakingChanged
from sfu.dominant_speaker import DominantSpeakerChanged
from sfu.events import SlotsChanged
from sfu.room import Room
from sfu.slots import LoudestPolicy
from sfu.streams import SlotFormat

SILENT = 127
Script = Callable[[float], dict[str, int]]  # time -> {speaker: RFC 6464 level} for that frame


def make_room(speakers: list[str], k: int = 2) -> Room:
    room = Room("r", LoudestPolicy(hold=1.5), ActivityObserver(speaking_interval=0.3))
    for i, pid in enumerate(speakers):
        room.join(pid, True, float(i) * 0.001)
        room.attach_slots(pid, [SlotFormat(111)] * k, 0.0)
        room.set_uplink(pid, True, 0.0)
    room.join("listener", False, 0.0)
    room.attach_slots("listener", [SlotFormat(111)] * k, 0.0)
    return room


def run(room: Room, script: Script, start: float, end: float) -> list[object]:
    """Feed 20 ms packets from ``script`` and tick every 50 ms; return the events."""
    events: list[object] = []
    t = start
    step = 0
    while t < end:
        for pid, level in script(t).items():
            room.on_rtp(pid, level, 60, t)
        step += 1
        t = start + step * 0.02
        if step % 5 == 0 or step % 5 == 2:  # ~every 50 ms
            room.tick(t)
            while (event := room.next_event()) is not None:
                events.append(event)
    return events


def listener_slots(room: Room) -> set[str]:
    return {s for s in room.participants["listener"].layout if s is not None}


def voice(base: int, t: float) -> int:
    """Speech-like: ~200 ms syllables at ``base`` with quieter gaps (noise floors adapt
    to a constant level, so a flat tone would not count as talking)."""
    return base if (t * 5) % 1.0 < 0.7 else min(SILENT, base + 45)


def talking(**levels: int) -> Script:
    return lambda t: {
        pid: voice(levels[pid], t) if pid in levels else SILENT for pid in ("a", "b", "c", "d")
    }


def test_loudest_speakers_win_and_silence_is_not_forwarded() -> None:
    room = make_room(["a", "b", "c", "d"])
    run(room, talking(a=10, b=20, c=30), 0.0, 2.0)
    assert listener_slots(room) == {"a", "b"}
    assert room.on_rtp("d", SILENT, 60, 2.0) == ()  # dropped before fan-out, counted
    assert room.dropped["not_selected"] > 0
    assert room.observer.snapshot.dominant == "a"


def test_a_cough_does_not_take_a_slot_from_a_pausing_speaker() -> None:
    room = make_room(["a", "b", "c", "d"])
    run(room, talking(a=10, b=15), 0.0, 3.0)
    assert listener_slots(room) == {"a", "b"}
    layout = room.participants["listener"].layout

    def pause_with_cough(t: float) -> dict[str, int]:
        cough = 3.5 <= t < 3.6
        return {"a": voice(10, t), "b": SILENT, "c": 5 if cough else SILENT, "d": SILENT}

    run(room, pause_with_cough, 3.0, 4.2)  # b pauses 1.2 s (< hold); c coughs 100 ms
    assert room.participants["listener"].layout == layout


def test_hold_keeps_a_quiet_speaker_until_someone_else_talks_then_switches_fast() -> None:
    room = make_room(["a", "b", "c", "d"])
    run(room, talking(a=10, b=15), 0.0, 3.0)
    run(room, talking(a=10), 3.0, 4.2)  # b quiet for 1.2 s (< hold): keeps its slot
    assert listener_slots(room) == {"a", "b"}
    run(room, talking(a=10, c=20), 4.2, 4.7)  # c starts talking: in within 500 ms
    assert listener_slots(room) == {"a", "c"}
    run(room, talking(a=10), 4.7, 7.0)  # nobody else talks: c held, then expires
    assert listener_slots(room) == {"a"}


def test_dominant_speaker_is_always_routed() -> None:
    room = make_room(["a", "b", "c"], k=1)
    run(room, talking(a=25), 0.0, 4.0)  # a holds the floor, quietly
    assert listener_slots(room) == {"a"}

    def interjections(t: float) -> dict[str, int]:
        loud = 4.0 <= t < 4.25  # two louder, short interjections over a
        return {"a": voice(25, t), "b": 5 if loud else SILENT, "c": 6 if loud else SILENT}

    run(room, interjections, 4.0, 4.6)
    assert room.observer.snapshot.dominant == "a"
    assert listener_slots(room) == {"a"}


def test_stale_producers_expire() -> None:
    room = make_room(["a", "b"])
    run(room, talking(a=10, b=12), 0.0, 2.0)
    assert listener_slots(room) == {"a", "b"}

    def b_gone(t: float) -> dict[str, int]:
        return {"a": voice(10, t)}  # b's client stopped sending altogether

    run(room, b_gone, 2.0, 5.0)
    assert listener_slots(room) == {"a"}


def test_speaking_indicators_report_changes_only_and_dominant_events() -> None:
    room = make_room(["a", "b", "c", "d"])
    events = run(room, talking(a=10), 0.0, 2.0)
    events += run(room, talking(b=10), 2.0, 5.0)
    speaking = [c for e in events if isinstance(e, SpeakingChanged) for c in e.changes]
    starts = [(c.producer_id, c.speaking) for c in speaking if c.speaking]
    assert starts[0] == ("a", True)
    assert ("b", True) in starts
    assert ("a", False) in [(c.producer_id, c.speaking) for c in speaking]
    assert len(speaking) < 20  # changes, not one report per tick per speaker
    dominant = [e.producer_id for e in events if isinstance(e, DominantSpeakerChanged)]
    assert dominant[0] == "a" and dominant[-1] == "b"


def test_a_muted_speaker_is_neither_routed_nor_shown_speaking() -> None:
    room = make_room(["a", "b"])
    room.set_muted("a", True, 0.0)
    events = run(room, talking(a=5, b=20), 0.0, 2.0)
    assert listener_slots(room) == {"b"}
    shown = {c.producer_id for e in events if isinstance(e, SpeakingChanged) for c in e.changes}
    assert "a" not in shown


def test_a_lone_short_sound_takes_a_free_slot_with_its_first_packet() -> None:
    room = make_room(["a", "b", "c"])
    run(room, talking(a=10), 0.0, 3.0)  # a talks; b and c silent for 3 s
    assert listener_slots(room) == {"a"}
    onsets = room.onsets
    # b makes one 20 ms sound: that very packet is forwarded, not the next tick's.
    targets = room.on_rtp("b", 20, 60, 3.001)
    assert {c.subscriber_id for s in targets for c in s.members} >= {"listener", "a", "c"}
    assert "b" in listener_slots(room)
    assert room.onsets == onsets + 1
    assert room.has_events  # the new layouts are announced with the packet, not at the tick
    changed = {e.subscriber_id for e in iter(room.next_event, None) if isinstance(e, SlotsChanged)}
    assert changed >= {"listener", "a", "c"}
    assert room.on_rtp("c", SILENT, 60, 3.002) == ()  # silence never takes a slot


def test_an_onset_competing_for_full_slots_waits_for_the_policy() -> None:
    room = make_room(["a", "b", "c"], k=1)
    run(room, talking(a=10, b=15, c=20), 0.0, 3.0)  # everyone's one slot is full
    layout = room.participants["listener"].layout
    assert all(None not in p.layout for p in room.participants.values())
    (outside,) = [pid for pid in "abc" if not room.routing.targets(pid)]
    before = room.dropped["not_selected"]
    assert room.on_rtp(outside, 5, 60, 3.001) == ()  # louder, but no slot is free
    assert room.participants["listener"].layout == layout
    assert room.dropped["not_selected"] == before + 1


def test_a_dtx_packet_is_silence_whatever_level_it_claims() -> None:
    room = make_room(["a", "b"])
    run(room, talking(a=10), 0.0, 3.0)
    onsets = room.onsets
    assert room.on_rtp("b", 5, 1, 3.001) == ()  # a TOC byte only: no audio to forward
    assert room.participants["b"].producer.audio_level == SILENT
    assert room.onsets == onsets
    assert room.on_rtp("b", 5, 3, 3.021) != ()  # three bytes are audio
