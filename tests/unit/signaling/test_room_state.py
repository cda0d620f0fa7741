"""``Room.state`` / ``Room.restore``: a room taken over by another node goes on as it was.

The state goes through JSON, as it does through Redis: roles, mute, hands (in queue
order), bans, attendance, attendee places and version, chat history and pin, media
mode and resume tokens all survive, and everyone holds a seat until they resume.
"""

from __future__ import annotations

import json

import pytest

from sfu.mixer import MediaMode
from signaling.room.roles import Role
from signaling.room.room import Room
from signaling.room.settings import RoomSettings
from signaling.room.stage import StageConfig
from signaling.wire.errors import ErrorCode, PodiumError
from tests.fakes.room_runtime import Inbox, ManualClock, MediaFactory, run
from tests.unit.signaling.test_room_orchestrator import Harness


def busy_room() -> tuple[Harness, dict[str, str]]:
    """A host, a speaker, three listeners (two hands up, one banned), chat with a pin."""
    h = Harness()
    for identity, role in (("host", Role.HOST), ("spk", Role.SPEAKER)):
        h.join(identity, role)
    for identity in ("a", "b", "c", "d"):
        h.join(identity)
    now = h.clock.time()
    h.room.apply(h.room.stage.raise_hand("b", now), now)
    h.room.apply(h.room.stage.raise_hand("a", now + 1), now + 1)
    h.room.apply(h.room.stage.mute("host", "spk", now), now)
    h.room.apply(h.room.stage.remove("host", "d", now, ban=True, reason="spam"), now)
    h.clock.advance(2.0)  # the removal runs; attendee deltas go out
    first = h.room.send_chat("a", "hello", now)
    h.room.send_chat("host", "welcome", now)
    h.room.pin("host", first["id"], now)
    h.room.set_media_mode(MediaMode.MIX)
    tokens = {pid: h.room.resume_token(pid) for pid in h.room.participants}
    return h, tokens


def taken_over(h: Harness) -> tuple[Room, ManualClock, MediaFactory]:
    state = json.loads(json.dumps(h.room.state()))
    clock, factory = ManualClock(start=h.clock.time() + 5), MediaFactory()
    settings = RoomSettings().restored(state["settings"])

    async def on_empty(room: Room) -> None:
        pass

    room = Room("r", settings, factory, clock, on_empty, resume_window=30.0)
    room.restore(state)
    return room, clock, factory


def test_stage_chat_attendees_and_media_mode_come_back_as_they_were() -> None:
    h, _ = busy_room()
    room, _, factory = taken_over(h)
    old = h.room
    assert room.stage.snapshot() == old.stage.snapshot()  # roles, mute, hands in order, bans
    assert room.stage.hand_queue() == ["b", "a"]
    assert room.stage.is_banned("d")
    assert room.stage.attendance() == old.stage.attendance()
    assert room.chat.history() == old.chat.history()
    assert room.chat.pinned == old.chat.pinned
    assert room.created_at == old.created_at
    assert room.media_mode_info()["mode"] == MediaMode.MIX
    old_page, new_page = old.attendees.page(limit=10), room.attendees.page(limit=10)
    assert new_page.items == old_page.items  # same people, same places
    assert new_page.version > old_page.version
    media = factory.last
    assert media is not None
    assert media.joined == {"host": True, "spk": True, "a": False, "b": False, "c": False}
    assert media.muted["spk"] is True
    # Message ids go on from where they were.
    assert room.send_chat("c", "later", room.clock.time())["id"] == 3


def test_everyone_resumes_with_the_token_they_had_and_must_renegotiate_media() -> None:
    h, tokens = busy_room()
    room, clock, _ = taken_over(h)
    inbox = Inbox()
    identity = room.seats.claim(tokens["a"], clock.time())
    assert identity == "a"
    room.resume("a", inbox)
    assert not room.media_up("a")  # its peer connection was with the old node
    assert room.stage_view("a")["you"]["hand_raised"] is True
    host = Inbox()
    room.resume(room.seats.claim(tokens["host"], clock.time()), host)
    room.resume(room.seats.claim(tokens["spk"], clock.time()), Inbox())
    assert [e["participant"] for e in host.events("reconnected")] == ["spk"]


def test_who_does_not_come_back_is_released_after_the_window() -> None:
    h, tokens = busy_room()
    room, clock, _ = taken_over(h)
    room.resume(room.seats.claim(tokens["host"], clock.time()), host := Inbox())
    room.media_restored("host")  # its new offer was answered
    clock.advance(31.0)
    assert list(room.participants) == ["host"]
    assert room.stage.hand_queue() == []
    with pytest.raises(PodiumError) as refused:
        room.seats.claim(tokens["a"], clock.time())
    assert refused.value.code == ErrorCode.RESUME_FAILED
    clock.advance(2.0)
    (delta,) = host.events("attendees")
    assert sorted(delta["left"]) == ["a", "b", "c", "spk"]


def test_a_room_made_through_the_api_keeps_its_limits() -> None:
    settings = RoomSettings(
        stage=StageConfig(max_participants=7, max_on_stage=2),
        empty_timeout=90.0,
        media_mode="auto",
        metadata={"topic": "x"},
    )
    assert RoomSettings().restored(json.loads(json.dumps(settings.state()))) == settings


def test_every_change_moves_the_revision() -> None:
    h = Harness()
    seen = [h.room.revision]

    def moved() -> None:
        assert h.room.revision > seen[-1]
        seen.append(h.room.revision)

    h.join("host", Role.HOST)
    moved()
    h.join("l")
    moved()
    now = h.clock.time()
    h.room.apply(h.room.stage.raise_hand("l", now), now)
    moved()
    message = h.room.send_chat("l", "hi", now)
    moved()
    h.room.pin("host", message["id"], now)
    moved()
    h.room.resume_token("l")
    moved()
    run(h.room.remove("l", "left"))
    moved()
