"""signaling.resume.SeatHolds: tokens, holds and their deadlines (sans-I/O)."""

from __future__ import annotations

import pytest

from signaling.room.resume import Endings, SeatEnded, SeatHolds, room_of
from signaling.wire.errors import PodiumError


def test_a_token_names_its_room_and_reclaims_its_identity_once_reissued() -> None:
    holds = SeatHolds("room.with.dots", window=30)
    first = holds.issue("ann")
    assert room_of(first) == "room.with.dots"
    assert holds.claim(first, now=0) == "ann"
    second = holds.issue("ann")  # each resume hands out the next token
    with pytest.raises(PodiumError) as stale:
        holds.claim(first, now=0)
    assert stale.value.code == "resume_failed"
    assert holds.claim(second, now=0) == "ann"


def test_the_token_a_client_resumed_with_stays_good_until_it_uses_the_next() -> None:
    """A resume whose reply (with the next token) was lost is retried with the same token."""
    holds = SeatHolds("r", window=30)
    first = holds.issue("ann")
    second = holds.issue("ann", claimed=holds.claim(first, now=0) and first)
    assert holds.claim(first, now=1) == "ann"  # the retry: still good
    third = holds.issue("ann", claimed=first)  # its reply arrives this time
    assert holds.claim(third, now=2) == "ann"
    holds.issue("ann", claimed=third)  # resumed with the newest: the older ones end
    for stale in (first, second):
        with pytest.raises(PodiumError):
            holds.claim(stale, now=3)
    assert holds.state()["ann"][1] == third  # kept through a takeover too


def test_a_hold_expires_after_the_window_and_an_earlier_deadline_wins() -> None:
    holds = SeatHolds("r", window=30)
    token = holds.issue("ann")
    holds.hold("ann", now=100)
    holds.hold("ann", now=110, media=True)  # later loss: the first deadline stands
    assert holds.next_deadline() == 130
    assert holds.expired(now=129.9) == []
    assert holds.claim(token, now=129.9) == "ann"
    assert holds.expired(now=130) == ["ann"]
    with pytest.raises(PodiumError):
        holds.claim(token, now=130)


def test_release_forgets_token_and_hold() -> None:
    holds = SeatHolds("r", window=5)
    token = holds.issue("ann")
    holds.hold("ann", now=0)
    holds.release("ann")
    assert holds.next_deadline() is None
    with pytest.raises(PodiumError):
        holds.claim(token, now=0)


@pytest.mark.parametrize("token", ["", "nodot", ".room", "secret."])
def test_malformed_tokens_name_no_room(token: str) -> None:
    assert room_of(token) is None


def released(reason: str) -> tuple[SeatHolds, str]:
    """Ann's seat, released at t=100 for ``reason``, and the token she would resume with."""
    holds = SeatHolds("r", window=30)
    token = holds.issue("ann")
    holds.release("ann", reason, now=100)
    return holds, token


@pytest.mark.parametrize("reason", ["removed", "banned", "room_ended", "duplicate_identity"])
def test_a_seat_ended_for_a_reason_tells_it_to_a_resume_within_the_window(reason: str) -> None:
    holds, token = released(reason)
    with pytest.raises(SeatEnded) as ended:
        holds.claim(token, now=129.9)
    assert ended.value.reason == reason and ended.value.code == "resume_failed"
    with pytest.raises(PodiumError) as late:  # after the window: forgotten
        holds.claim(token, now=130)
    assert not isinstance(late.value, SeatEnded)


@pytest.mark.parametrize("reason", ["left", "connection_lost", "media_failed", ""])
def test_a_seat_left_or_lost_is_only_resume_failed(reason: str) -> None:
    holds, token = released(reason)
    with pytest.raises(PodiumError) as refused:
        holds.claim(token, now=101)
    assert not isinstance(refused.value, SeatEnded) and refused.value.code == "resume_failed"


def test_endings_are_shared_by_rooms_and_outlive_them() -> None:
    endings = Endings(window=30)
    ended_room = SeatHolds("r", 30, endings)
    token = ended_room.issue("ann")
    ended_room.release("ann", "room_ended", now=0)
    del ended_room
    next_room = SeatHolds("r", 30, endings)  # a new room of the same name
    with pytest.raises(SeatEnded) as ended:
        next_room.claim(token, now=1)
    assert ended.value.reason == "room_ended"
    endings.check(next_room.issue("bob"), now=1)  # a live token: nothing to tell
