"""``signaling.room.room.Room`` against a fake media façade and a manual clock: no loop, no I/O.

What the orchestrator must get right: admission and replacement, stage decisions carried
out on media and on the wire, batched attendee deltas on the clock, removals deferred
after the reply, media refusals mapped to wire codes, recording, and closing.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import pytest

from sfu.events import SlotsChanged
from sfu.mixer import MIX, MediaMode
from signaling.room.roles import Role
from signaling.room.room import Room
from signaling.room.settings import RoomSettings
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.tokens import AccessToken
from tests.fakes.room_runtime import FakeMedia, Inbox, ManualClock, MediaFactory, run


class Harness:
    def __init__(self, recordings_dir: str | None = None) -> None:
        self.clock = ManualClock()
        self.factory = MediaFactory()
        self.emptied: list[Room] = []
        self.room = Room(
            "r",
            RoomSettings(),
            self.factory,
            self.clock,
            self._on_empty,
            recordings_dir=recordings_dir,
        )
        self.inboxes: dict[str, Inbox] = {}

    async def _on_empty(self, room: Room) -> None:
        self.emptied.append(room)

    @property
    def media(self) -> FakeMedia:
        assert self.factory.last is not None
        return self.factory.last

    def join(self, identity: str, role: Role = Role.LISTENER) -> Inbox:
        inbox = self.inboxes[identity] = Inbox()
        run(self.room.admit(AccessToken(identity, "r", role, name=identity.title()), inbox))
        return inbox


def test_admit_joins_media_with_publish_right_and_batches_the_attendee_delta() -> None:
    h = Harness()
    host = h.join("h", Role.HOST)
    h.join("l")
    assert h.media.joined == {"h": True, "l": False}
    assert host.events("attendees") == []  # batched: nothing before the timer
    h.clock.advance(5.0)
    (delta,) = host.events("attendees")
    assert [a["identity"] for a in delta["joined"]] == ["h", "l"]
    assert delta["total"] == 2


def test_an_accepted_invitation_lets_the_listener_publish_and_everyone_hears_of_it() -> None:
    h = Harness()
    host, listener = h.join("h", Role.HOST), h.join("l")
    now = h.clock.time()
    h.room.apply(h.room.stage.invite_to_stage("h", "l", now), now)
    assert h.media.joined["l"] is False
    h.room.apply(h.room.stage.accept_invite("l", now), now)
    assert h.media.joined["l"] is True
    for inbox in (host, listener):
        assert [e["participant"] for e in inbox.events("role_changed")] == ["l"]


def test_hands_go_to_moderators_and_the_raiser_only() -> None:
    h = Harness()
    host, raiser, other = h.join("h", Role.HOST), h.join("a"), h.join("b")
    now = h.clock.time()
    h.room.apply(h.room.stage.raise_hand("a", now), now)
    assert len(host.events("hand_raised")) == len(raiser.events("hand_raised")) == 1
    assert other.events("hand_raised") == []


def test_a_removal_is_deferred_until_after_the_reply_then_releases_media() -> None:
    h = Harness()
    h.join("h", Role.HOST)
    victim = h.join("v")
    now = h.clock.time()
    h.room.apply(h.room.stage.remove("h", "v", now, ban=True), now)
    assert "v" in h.room.participants  # the request's reply goes out first
    h.clock.advance()
    assert "v" not in h.room.participants and "v" not in h.media.joined
    assert victim.closed == "banned"
    with pytest.raises(PodiumError) as refused:
        h.join("v")
    assert refused.value.code == ErrorCode.BANNED


def test_a_second_session_replaces_the_first_without_emptying_the_room() -> None:
    h = Harness()
    first = h.join("a")
    second = h.join("a")
    assert first.closed == "duplicate_identity"
    assert h.room.participants["a"].outbox is second
    assert h.emptied == []


def test_the_last_leave_hands_the_room_back() -> None:
    h = Harness()
    h.join("a")
    run(h.room.remove("a", "left"))
    assert h.emptied == [h.room]
    assert ("leave", "a") in h.media.calls


def test_media_refusals_become_wire_errors() -> None:
    h = Harness()
    h.join("a")
    assert run(h.room.connect_media("a", "offer")) == "answer to offer"
    h.media.refuse_offer = True
    with pytest.raises(PodiumError) as refused:
        run(h.room.connect_media("a", "offer"))
    assert refused.value.code == ErrorCode.INVALID_SDP


def test_slot_events_name_the_mix_for_a_speaker_in_it() -> None:
    h = Harness()
    inbox = h.join("s", Role.SPEAKER)
    h.media.emit(SlotsChanged("s", ("mix-minus:s", None, None)))
    assert inbox.events("slots") == [{"slots": [MIX, None, None]}]


def test_recording_refused_without_a_directory_and_reported_when_kept(tmp_path: Path) -> None:
    h = Harness()
    h.join("h", Role.HOST)
    with pytest.raises(PodiumError) as refused:
        h.room.start_recording("h")
    assert refused.value.code == ErrorCode.RECORDING_UNAVAILABLE

    h = Harness(recordings_dir=str(tmp_path))
    host = h.join("h", Role.HOST)
    info = h.room.start_recording("h")
    assert info["recording"].startswith("r-") and info["recording"].endswith(".ogg")
    with pytest.raises(PodiumError) as twice:
        h.room.start_recording("h")
    assert twice.value.code == ErrorCode.ALREADY_RECORDING
    done = h.room.stop_recording("")
    assert done == {"recording": info["recording"], "by": "", "duration": 12.5}
    assert [e["recording"] for e in host.events("recording_finished")] == [info["recording"]]
    with pytest.raises(PodiumError) as not_recording:
        h.room.stop_recording("h")
    assert not_recording.value.code == ErrorCode.NOT_RECORDING


def test_media_mode_is_passed_through_and_reported() -> None:
    h = Harness()
    h.join("h", Role.HOST)
    assert h.room.set_media_mode(MediaMode.MIX) == {"mode": "mix", "mixing": True}
    assert h.media.mode == MediaMode.MIX


def test_close_removes_everyone_and_closes_media() -> None:
    h = Harness()
    a, b = h.join("a"), h.join("b")
    run(h.room.close("server_shutdown"))
    assert a.closed == b.closed == "server_shutdown"
    assert h.media.closed and h.room.participants == {}


def test_peer_loss_removes_the_participant() -> None:
    h = Harness()
    h.join("a")
    lost: Awaitable[None] = h.media.on_peer_lost("a", "failed")
    run(lost)  # type: ignore[arg-type]
    assert "a" not in h.room.participants
