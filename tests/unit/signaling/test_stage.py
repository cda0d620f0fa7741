from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pytest

from signaling.room.attendees import Identity
from signaling.room.roles import Action, Role
from signaling.room.stage import (
    HandLowered,
    HandRaised,
    InviteCancelled,
    Invited,
    InviteDeclined,
    Joined,
    Left,
    Muted,
    Removed,
    RoleChanged,
    RoomEnded,
    Stage,
    StageConfig,
)
from signaling.wire.errors import ErrorCode, PodiumError

H, M, S, L = Role.HOST, Role.MODERATOR, Role.SPEAKER, Role.LISTENER


def on_stage(stage: Stage, participant_id: str) -> bool:
    """May publish: a member on stage (the media layer silences a muted one)."""
    return participant_id in stage and stage.member(participant_id).on_stage


def identity(name: str) -> Identity:
    return Identity(
        user_id=f"user-{name}",
        name=name.title(),
        headline="Principal Engineer",
        avatar_url=f"https://cdn.example/{name}.png",
        profile_url=f"https://example.com/in/{name}",
    )


def make_stage(config: StageConfig | None = None, **people: Role) -> Stage:
    stage = Stage(config)
    stage.join("host", identity("host"), H, 0.0)
    for name, role in people.items():
        stage.join(name, identity(name), role, 0.0)
    return stage


def refused(stage: Stage, code: ErrorCode, request: Callable[[], Any]) -> PodiumError:
    """Assert the request fails with ``code`` and leaves the stage untouched."""
    before = (stage.snapshot(), stage.attendance())
    with pytest.raises(PodiumError) as error:
        request()
    assert error.value.code == code, error.value
    assert (stage.snapshot(), stage.attendance()) == before
    return error.value


def test_join_emits_joined_and_stage_roles_arrive_unmuted_unless_configured() -> None:
    stage = Stage()
    assert stage.join("host", identity("host"), H, 1.0) == Joined("host", identity("host"), H)
    stage.join("ann", identity("ann"), L, 2.0)
    assert not stage.member("host").muted
    assert not stage.member("ann").muted
    careful = Stage(StageConfig(join_muted=True))
    careful.join("host", identity("host"), H, 1.0)
    assert careful.member("host").muted and not careful.member("host").muted_by_moderator
    assert on_stage(stage, "host") and not on_stage(stage, "ann")
    assert not on_stage(stage, "nobody")
    assert [m.id for m in stage.members()] == ["host", "ann"]


def test_hand_queue_keeps_the_order_hands_went_up() -> None:
    stage = make_stage(a=L, b=L, c=L)
    assert stage.raise_hand("b", 1.0) == HandRaised("b", 1.0)
    stage.raise_hand("c", 1.0)  # same instant: call order still decides
    stage.raise_hand("a", 2.0)
    assert stage.hand_queue() == ["b", "c", "a"]
    assert stage.lower_hand("c", "c", 3.0) == HandLowered("c", "c")
    assert stage.hand_queue() == ["b", "a"]
    stage.raise_hand("c", 4.0)
    assert stage.hand_queue() == ["b", "a", "c"]
    assert stage.snapshot().hands == (("b", 1.0), ("a", 2.0), ("c", 4.0))


def test_moderator_dismisses_a_hand() -> None:
    stage = make_stage(mod=M, a=L)
    stage.raise_hand("a", 1.0)
    assert stage.lower_hand("mod", "a", 2.0) == HandLowered("a", "mod")
    assert stage.hand_queue() == []
    refused(stage, ErrorCode.HAND_NOT_RAISED, lambda: stage.lower_hand("mod", "a", 3.0))


def test_raising_a_hand_twice_is_refused() -> None:
    stage = make_stage(a=L)
    stage.raise_hand("a", 1.0)
    refused(stage, ErrorCode.HAND_ALREADY_RAISED, lambda: stage.raise_hand("a", 2.0))
    assert stage.snapshot().hands == (("a", 1.0),)


def test_invite_then_accept_puts_the_listener_on_stage_muted() -> None:
    stage = make_stage(a=L)
    stage.raise_hand("a", 1.0)
    assert stage.invite_to_stage("host", "a", 2.0) == Invited("a", "host")
    assert stage.member("a").invited_by == "host"
    # Invited is not enough: nothing is published before the listener consents.
    assert not on_stage(stage, "a")
    assert stage.hand_queue() == ["a"]

    changed = stage.accept_invite("a", 3.0)
    assert changed == RoleChanged("a", L, S, by="a")
    assert changed.can_publish and on_stage(stage, "a")
    member = stage.member("a")
    assert member.role is S and member.on_stage and member.invited_by is None
    assert member.muted and not member.muted_by_moderator
    assert stage.hand_queue() == []
    assert stage.unmute("a", "a", 4.0) == Muted("a", "a", muted=False)


def test_invite_without_a_raised_hand_still_needs_acceptance() -> None:
    stage = make_stage(a=L)
    stage.invite_to_stage("host", "a", 1.0)
    assert stage.member("a").role is L
    stage.accept_invite("a", 2.0)
    assert stage.member("a").role is S


def test_decline_keeps_the_listener_off_stage_with_hand_raised() -> None:
    stage = make_stage(a=L)
    stage.raise_hand("a", 1.0)
    stage.invite_to_stage("host", "a", 2.0)
    assert stage.decline_invite("a", 3.0) == InviteDeclined("a")
    member = stage.member("a")
    assert member.role is L and member.invited_by is None and not on_stage(stage, "a")
    assert stage.hand_queue() == ["a"]
    refused(stage, ErrorCode.NO_INVITATION, lambda: stage.accept_invite("a", 4.0))


def test_cancelled_invitation_cannot_be_accepted() -> None:
    stage = make_stage(a=L)
    stage.invite_to_stage("host", "a", 1.0)
    assert stage.cancel_invite("host", "a", 2.0) == InviteCancelled("a", "host")
    refused(stage, ErrorCode.NO_INVITATION, lambda: stage.accept_invite("a", 3.0))
    refused(stage, ErrorCode.NO_INVITATION, lambda: stage.cancel_invite("host", "a", 3.0))


def test_invitation_errors_change_nothing() -> None:
    stage = make_stage(a=L, s=S)
    refused(stage, ErrorCode.NO_INVITATION, lambda: stage.accept_invite("a", 1.0))
    refused(stage, ErrorCode.NO_INVITATION, lambda: stage.decline_invite("a", 1.0))
    refused(stage, ErrorCode.ALREADY_ON_STAGE, lambda: stage.invite_to_stage("host", "s", 1.0))
    stage.invite_to_stage("host", "a", 1.0)
    refused(stage, ErrorCode.ALREADY_INVITED, lambda: stage.invite_to_stage("host", "a", 2.0))
    # A speaker cannot accept on a listener's behalf.
    refused(stage, ErrorCode.NOT_PERMITTED, lambda: stage.accept_invite("s", 2.0))


def test_move_to_audience_by_moderator_or_by_the_speaker() -> None:
    stage = make_stage(mod=M, s1=S, s2=S)
    stage.mute("s1", "s1", 1.0)
    assert stage.move_to_audience("mod", "s1", 2.0) == RoleChanged("s1", S, L, by="mod")
    assert not on_stage(stage, "s1")
    assert not stage.member("s1").muted  # mute state belongs to the stage
    assert stage.move_to_audience("s2", "s2", 3.0) == RoleChanged("s2", S, L, by="s2")
    assert not on_stage(stage, "s2")
    refused(stage, ErrorCode.NOT_ON_STAGE, lambda: stage.move_to_audience("mod", "s2", 4.0))
    # Back on stage only through a new, accepted invitation.
    stage.invite_to_stage("mod", "s1", 5.0)
    stage.accept_invite("s1", 6.0)
    assert on_stage(stage, "s1") and stage.member("s1").muted


def test_promote_and_demote_walk_the_stage_ladder() -> None:
    stage = make_stage(mod=M, s=S, a=L)
    assert stage.promote("mod", "s", 1.0) == RoleChanged("s", S, M, by="mod")
    assert stage.promote("host", "s", 2.0) == RoleChanged("s", M, H, by="host")
    refused(stage, ErrorCode.INVALID_REQUEST, lambda: stage.promote("host", "s", 3.0))
    assert stage.demote("host", "s", 3.0) == RoleChanged("s", H, M, by="host")
    assert stage.demote("s", "s", 4.0) == RoleChanged("s", M, S, by="s")
    refused(stage, ErrorCode.INVALID_REQUEST, lambda: stage.demote("host", "s", 5.0))
    refused(stage, ErrorCode.NOT_ON_STAGE, lambda: stage.promote("host", "a", 5.0))
    refused(stage, ErrorCode.NOT_PERMITTED, lambda: stage.demote("mod", "host", 5.0))


def test_role_changes_keep_the_mute_state_on_stage() -> None:
    stage = make_stage(s=S, t=S)
    stage.mute("t", "t", 1.0)
    stage.promote("host", "s", 2.0)
    stage.promote("host", "t", 2.0)
    assert not stage.member("s").muted and stage.member("t").muted


def test_moderator_mute_can_only_be_lifted_by_the_speaker() -> None:
    stage = make_stage(mod=M, s=S)
    assert stage.mute("mod", "s", 2.0) == Muted("s", "mod", muted=True)
    member = stage.member("s")
    assert member.muted and member.muted_by_moderator and member.muted_by == "mod"
    assert on_stage(stage, "s")  # still on stage: the media layer only silences them
    refused(stage, ErrorCode.NOT_PERMITTED, lambda: stage.unmute("mod", "s", 3.0))
    refused(stage, ErrorCode.NOT_PERMITTED, lambda: stage.unmute("host", "s", 3.0))
    refused(stage, ErrorCode.ALREADY_MUTED, lambda: stage.mute("host", "s", 3.0))
    assert stage.unmute("s", "s", 4.0) == Muted("s", "s", muted=False)
    assert not stage.member("s").muted
    refused(stage, ErrorCode.NOT_MUTED, lambda: stage.unmute("s", "s", 5.0))


def test_self_mute() -> None:
    stage = make_stage(s=S)
    assert stage.mute("s", "s", 2.0) == Muted("s", "s", muted=True)
    assert stage.member("s").muted and not stage.member("s").muted_by_moderator


def test_listeners_cannot_be_muted() -> None:
    stage = make_stage(a=L)
    refused(stage, ErrorCode.NOT_ON_STAGE, lambda: stage.mute("host", "a", 1.0))


def test_remove_without_ban_allows_rejoining() -> None:
    stage = make_stage(mod=M, a=L)
    stage.raise_hand("a", 1.0)
    assert stage.remove("mod", "a", 2.0, reason="off topic") == Removed(
        "a", "mod", banned=False, reason="off topic"
    )
    assert [m.id for m in stage.members()] == ["host", "mod"]
    assert stage.hand_queue() == []
    assert not stage.is_banned("user-a")
    stage.join("a2", identity("a"), L, 3.0)


def test_ban_refuses_the_identity_for_the_rooms_lifetime() -> None:
    stage = make_stage(mod=M, s=S)
    assert stage.remove("mod", "s", 1.0, ban=True) == Removed("s", "mod", banned=True, reason="")
    assert stage.is_banned("user-s") and not on_stage(stage, "s")
    refused(stage, ErrorCode.BANNED, lambda: stage.join("s2", identity("s"), L, 2.0))
    refused(stage, ErrorCode.NOT_IN_ROOM, lambda: stage.remove("mod", "s", 2.0))
    assert stage.snapshot().banned == ("user-s",)


def test_moderator_cannot_remove_or_ban_a_host() -> None:
    stage = make_stage(mod=M)
    refused(stage, ErrorCode.NOT_PERMITTED, lambda: stage.remove("mod", "host", 1.0))
    refused(stage, ErrorCode.NOT_PERMITTED, lambda: stage.remove("mod", "host", 1.0, ban=True))


def test_leave() -> None:
    stage = make_stage(a=L)
    stage.invite_to_stage("host", "a", 1.0)
    assert stage.leave("a", 2.0) == Left("a")
    refused(stage, ErrorCode.NO_SUCH_PARTICIPANT, lambda: stage.leave("a", 3.0))
    refused(stage, ErrorCode.NO_SUCH_PARTICIPANT, lambda: stage.member("a"))


def test_only_a_host_ends_the_room_and_then_everything_is_refused() -> None:
    stage = make_stage(mod=M, s=S, a=L)
    refused(stage, ErrorCode.NOT_PERMITTED, lambda: stage.end_room("mod", 1.0))
    assert stage.end_room("host", 2.0) == RoomEnded("host")
    assert stage.ended and stage.members() == [] and not on_stage(stage, "s")
    assert all(visit.left_at == 2.0 for r in stage.attendance() for visit in r.visits)
    for request in (
        lambda: stage.join("b", identity("b"), L, 3.0),
        lambda: stage.leave("a", 3.0),
        lambda: stage.raise_hand("a", 3.0),
        lambda: stage.mute("host", "s", 3.0),
        lambda: stage.end_room("host", 3.0),
        lambda: stage.authorize("host", Action.VIEW_ATTENDANCE),
    ):
        refused(stage, ErrorCode.ROOM_ENDED, request)


def test_room_full() -> None:
    stage = make_stage(StageConfig(max_participants=2), a=L)
    refused(stage, ErrorCode.ROOM_FULL, lambda: stage.join("b", identity("b"), L, 1.0))
    stage.leave("a", 1.0)
    stage.join("b", identity("b"), L, 2.0)


def test_stage_full_at_invite_accept_and_join() -> None:
    stage = make_stage(StageConfig(max_on_stage=2), a=L, b=L, c=L)
    stage.invite_to_stage("host", "a", 1.0)
    stage.invite_to_stage("host", "b", 1.0)
    stage.accept_invite("a", 2.0)
    refused(stage, ErrorCode.STAGE_FULL, lambda: stage.accept_invite("b", 3.0))
    assert stage.member("b").invited_by == "host"  # still pending, may be accepted later
    refused(stage, ErrorCode.STAGE_FULL, lambda: stage.invite_to_stage("host", "c", 3.0))
    refused(stage, ErrorCode.STAGE_FULL, lambda: stage.join("d", identity("d"), S, 3.0))
    stage.move_to_audience("a", "a", 4.0)
    stage.accept_invite("b", 5.0)
    assert on_stage(stage, "b")


def test_duplicate_participant_or_identity_is_refused() -> None:
    stage = make_stage(a=L)
    refused(stage, ErrorCode.ALREADY_IN_ROOM, lambda: stage.join("a", identity("z"), L, 1.0))
    refused(stage, ErrorCode.ALREADY_IN_ROOM, lambda: stage.join("a2", identity("a"), L, 1.0))


def test_admission_of_a_second_session_counts_the_first_as_gone() -> None:
    """The check a replacing join passes before its identity's old session is dropped."""
    stage = make_stage(StageConfig(max_participants=3, max_on_stage=2), a=L)  # + host
    stage.join("s", identity("s"), S, 1.0)  # the room and the stage are full now
    stage.check_admission(identity("a"), L, replacing="a")
    stage.check_admission(identity("s"), S, replacing="s")  # its own seat on stage
    refused(stage, ErrorCode.STAGE_FULL, lambda: stage.check_admission(identity("a"), S, "a"))
    refused(stage, ErrorCode.ROOM_FULL, lambda: stage.check_admission(identity("x"), L))
    stage.remove("host", "a", 2.0, ban=True)
    refused(stage, ErrorCode.BANNED, lambda: stage.check_admission(identity("a"), L))


def test_attendance_appends_a_visit_per_rejoin_with_roles_held() -> None:
    stage = make_stage()
    stage.join("a1", identity("a"), L, 10.0)
    stage.invite_to_stage("host", "a1", 11.0)
    stage.accept_invite("a1", 12.0)
    stage.promote("host", "a1", 13.0)
    stage.leave("a1", 20.0)
    stage.join("a2", identity("a"), L, 30.0)

    (host, ann) = stage.attendance()
    assert host.identity == identity("host") and host.visits[0].left_at is None
    assert ann.identity == identity("a")
    first, second = ann.visits
    assert (first.participant, first.joined_at, first.left_at) == ("a1", 10.0, 20.0)
    assert first.roles == ((L, 10.0), (S, 12.0), (M, 13.0))
    assert (second.participant, second.joined_at, second.left_at) == ("a2", 30.0, None)
    assert second.roles == ((L, 30.0),)


def test_attendance_is_for_hosts_and_moderators() -> None:
    stage = make_stage(mod=M, s=S)
    stage.authorize("mod", Action.VIEW_ATTENDANCE)
    refused(stage, ErrorCode.NOT_PERMITTED, lambda: stage.authorize("s", Action.VIEW_ATTENDANCE))


def test_snapshot_is_plain_data() -> None:
    stage = make_stage(a=L)
    stage.raise_hand("a", 1.0)
    dump: dict[str, Any] = asdict(stage.snapshot())
    assert dump["hands"] == (("a", 1.0),)
    assert [m["id"] for m in dump["members"]] == ["host", "a"]
    assert dump["members"][1]["identity"]["headline"] == "Principal Engineer"


@pytest.mark.parametrize(
    "config", [{"max_participants": 0}, {"max_on_stage": 0}], ids=["participants", "stage"]
)
def test_config_is_validated(config: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        StageConfig(**config)  # type: ignore[arg-type]


def test_on_stage_lists_the_stage_in_join_order_through_every_change() -> None:
    """``on_stage()`` is kept as roles change, not found by walking the audience: it must
    always be what filtering ``members()`` gives, restored state included."""
    stage = make_stage(a=L, b=S, c=L, d=M)

    def consistent(s: Stage) -> list[str]:
        listed = [m.id for m in s.on_stage()]
        assert listed == [m.id for m in s.members() if m.on_stage]
        return listed

    assert consistent(stage) == ["host", "b", "d"]
    stage.invite_to_stage("host", "c", 1.0)
    stage.accept_invite("c", 2.0)
    assert consistent(stage) == ["host", "b", "c", "d"]  # join order, not stage order
    stage.move_to_audience("host", "b", 3.0)
    stage.leave("d", 4.0)
    assert consistent(stage) == ["host", "c"]
    stage.join("b2", identity("b2"), S, 5.0)
    assert consistent(stage) == ["host", "c", "b2"]
    restored = Stage()
    restored.restore_state(stage.state())
    assert consistent(restored) == ["host", "c", "b2"]
    restored.join("e", identity("e"), S, 6.0)
    assert consistent(restored) == ["host", "c", "b2", "e"]
