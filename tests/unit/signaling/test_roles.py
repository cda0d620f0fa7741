"""The permission table, exhaustively, through the real entry points.

EXPECTED is transcribed from the product rules, not from roles.PERMISSIONS, so
that a wrong entry in the table fails here. Every action is tried by every
actor role on every kind of target: themself, another participant of each
role, a participant of another room and an unknown id. A permitted request
on a target in the right state must succeed; a refused one must leave the
room exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from signaling.room.attendees import Identity
from signaling.room.chat import Chat, ChatMessage, PinChanged, Reaction
from signaling.room.roles import PERMISSIONS, Action, Role, Rule, require
from signaling.room.stage import (
    HandLowered,
    HandRaised,
    InviteCancelled,
    Invited,
    InviteDeclined,
    Muted,
    Removed,
    RoleChanged,
    RoomEnded,
    Stage,
)
from signaling.wire.errors import ErrorCode, PodiumError

H, M, S, L = Role.HOST, Role.MODERATOR, Role.SPEAKER, Role.LISTENER
NOW = 100.0

# Target kinds: a Role member stands for "another participant with that role".
SELF = "self"
ROOM = "room"  # actions without a participant target
OTHER_ROOM = "other_room"
UNKNOWN = "unknown"
Kind = Role | str

OTHERS = frozenset(Role)
NOT_HOSTS = frozenset({M, S, L})

EXPECTED: dict[Action, dict[Role, frozenset[Kind]]] = {
    Action.RAISE_HAND: {L: frozenset({SELF})},
    Action.LOWER_HAND: {H: OTHERS, M: OTHERS, L: frozenset({SELF})},
    Action.INVITE_TO_STAGE: {H: OTHERS, M: OTHERS},
    Action.CANCEL_INVITE: {H: OTHERS, M: OTHERS},
    Action.ACCEPT_INVITE: {L: frozenset({SELF})},
    Action.DECLINE_INVITE: {L: frozenset({SELF})},
    Action.MOVE_TO_AUDIENCE: {H: OTHERS, M: NOT_HOSTS | {SELF}, S: frozenset({SELF})},
    # Only a host makes a host; a moderator can only promote a speaker.
    Action.PROMOTE: {H: OTHERS, M: frozenset({S, L})},
    Action.DEMOTE: {H: OTHERS, M: NOT_HOSTS | {SELF}},
    Action.MUTE: {H: OTHERS | {SELF}, M: NOT_HOSTS | {SELF}, S: frozenset({SELF})},
    # Nobody opens someone else's microphone.
    Action.UNMUTE: {H: frozenset({SELF}), M: frozenset({SELF}), S: frozenset({SELF})},
    Action.REMOVE: {H: OTHERS, M: NOT_HOSTS},
    Action.BAN: {H: OTHERS, M: NOT_HOSTS},
    Action.END_ROOM: {H: frozenset({ROOM})},
    Action.SEND_CHAT: dict.fromkeys(Role, frozenset({ROOM})),
    Action.REACT: dict.fromkeys(Role, frozenset({ROOM})),
    Action.PIN_MESSAGE: {H: frozenset({ROOM}), M: frozenset({ROOM})},
    Action.VIEW_ATTENDANCE: {H: frozenset({ROOM}), M: frozenset({ROOM})},
    Action.SET_MEDIA_MODE: {H: frozenset({ROOM})},
    Action.RECORD: {H: frozenset({ROOM})},
}

# Permitted, but the target's role makes the request meaningless.
STATE_ERRORS: dict[Action, dict[Role, ErrorCode]] = {
    Action.LOWER_HAND: dict.fromkeys((H, M, S), ErrorCode.HAND_NOT_RAISED),
    Action.INVITE_TO_STAGE: dict.fromkeys((H, M, S), ErrorCode.ALREADY_ON_STAGE),
    Action.CANCEL_INVITE: dict.fromkeys((H, M, S), ErrorCode.NO_INVITATION),
    Action.MOVE_TO_AUDIENCE: {L: ErrorCode.NOT_ON_STAGE},
    Action.PROMOTE: {H: ErrorCode.INVALID_REQUEST, L: ErrorCode.NOT_ON_STAGE},
    Action.DEMOTE: {S: ErrorCode.INVALID_REQUEST, L: ErrorCode.NOT_ON_STAGE},
    Action.MUTE: {L: ErrorCode.NOT_ON_STAGE},
    Action.UNMUTE: {L: ErrorCode.NOT_ON_STAGE},
}


@dataclass
class Room:
    stage: Stage
    chat: Chat
    pinnable: ChatMessage


Call = Callable[[Room, str, str, Role], Any]

CALLS: dict[Action, tuple[Call, type | None]] = {
    Action.RAISE_HAND: (lambda r, a, t, role: r.stage.raise_hand(a, NOW), HandRaised),
    Action.LOWER_HAND: (lambda r, a, t, role: r.stage.lower_hand(a, t, NOW), HandLowered),
    Action.INVITE_TO_STAGE: (lambda r, a, t, role: r.stage.invite_to_stage(a, t, NOW), Invited),
    Action.CANCEL_INVITE: (
        lambda r, a, t, role: r.stage.cancel_invite(a, t, NOW),
        InviteCancelled,
    ),
    Action.ACCEPT_INVITE: (lambda r, a, t, role: r.stage.accept_invite(a, NOW), RoleChanged),
    Action.DECLINE_INVITE: (lambda r, a, t, role: r.stage.decline_invite(a, NOW), InviteDeclined),
    Action.MOVE_TO_AUDIENCE: (
        lambda r, a, t, role: r.stage.move_to_audience(a, t, NOW),
        RoleChanged,
    ),
    Action.PROMOTE: (lambda r, a, t, role: r.stage.promote(a, t, NOW), RoleChanged),
    Action.DEMOTE: (lambda r, a, t, role: r.stage.demote(a, t, NOW), RoleChanged),
    Action.MUTE: (lambda r, a, t, role: r.stage.mute(a, t, NOW), Muted),
    Action.UNMUTE: (lambda r, a, t, role: r.stage.unmute(a, t, NOW), Muted),
    Action.REMOVE: (lambda r, a, t, role: r.stage.remove(a, t, NOW), Removed),
    Action.BAN: (lambda r, a, t, role: r.stage.remove(a, t, NOW, ban=True), Removed),
    Action.END_ROOM: (lambda r, a, t, role: r.stage.end_room(a, NOW), RoomEnded),
    Action.SEND_CHAT: (lambda r, a, t, role: r.chat.send(a, role, "hello", NOW), ChatMessage),
    Action.REACT: (lambda r, a, t, role: r.chat.react(a, role, "👏", NOW), Reaction),
    Action.PIN_MESSAGE: (
        lambda r, a, t, role: r.chat.pin(a, role, r.pinnable.id, NOW),
        PinChanged,
    ),
    Action.VIEW_ATTENDANCE: (
        lambda r, a, t, role: r.stage.authorize(a, Action.VIEW_ATTENDANCE),
        None,
    ),
    Action.SET_MEDIA_MODE: (
        lambda r, a, t, role: r.stage.authorize(a, Action.SET_MEDIA_MODE),
        None,
    ),
    Action.RECORD: (lambda r, a, t, role: r.stage.authorize(a, Action.RECORD), None),
}
SELF_ONLY = {Action.RAISE_HAND, Action.ACCEPT_INVITE, Action.DECLINE_INVITE}
ROOM_WIDE = {
    Action.END_ROOM,
    Action.SEND_CHAT,
    Action.REACT,
    Action.PIN_MESSAGE,
    Action.VIEW_ATTENDANCE,
    Action.SET_MEDIA_MODE,
    Action.RECORD,
}


def kinds(action: Action) -> list[Kind]:
    if action in ROOM_WIDE:
        return [ROOM]
    if action in SELF_ONLY:
        return [SELF]
    return [SELF, *Role, OTHER_ROOM, UNKNOWN]


def cases() -> Iterator[Any]:
    for action in Action:
        for role in Role:
            for kind in kinds(action):
                yield pytest.param(action, role, kind, id=f"{action}-{role}-{kind}")


def identity(pid: str) -> Identity:
    return Identity(f"user-{pid}", pid.title(), "Engineer at Example")


def make_room(actor_role: Role) -> Room:
    stage = Stage()
    stage.join("actor", identity("actor"), actor_role, 0.0)
    for role in Role:
        stage.join(f"o-{role}", identity(f"o-{role}"), role, 0.0)
    chat = Chat()
    return Room(stage, chat, chat.send("o-listener", L, "pin me", 0.0))


def prepare(room: Room, action: Action, target: str) -> None:
    """Put the target in the state that makes the action meaningful, if its role allows."""
    stage = room.stage
    member = stage.member(target)
    if member.role is not L:
        if action is Action.UNMUTE:
            stage.mute(target, target, 0.0)  # token speakers arrive unmuted
        return
    if action is Action.LOWER_HAND:
        stage.raise_hand(target, 0.0)
    elif action in (Action.CANCEL_INVITE, Action.ACCEPT_INVITE, Action.DECLINE_INVITE):
        stage.invite_to_stage(f"o-{H}", target, 0.0)


def expected_code(action: Action, actor_role: Role, kind: Kind) -> ErrorCode | None:
    allowed = EXPECTED[action].get(actor_role, frozenset())
    if kind in (OTHER_ROOM, UNKNOWN):
        # Existence is only revealed to those who may act on others at all.
        return ErrorCode.NOT_IN_ROOM if allowed & OTHERS else ErrorCode.NOT_PERMITTED
    if kind not in allowed:
        return ErrorCode.NOT_PERMITTED
    target_role = actor_role if kind in (SELF, ROOM) else Role(kind)
    return STATE_ERRORS.get(action, {}).get(target_role)


def target_id(kind: Kind) -> str:
    if kind in (SELF, ROOM):
        return "actor"
    if kind == OTHER_ROOM:
        other = Stage()
        other.join("x-listener", identity("x-listener"), L, 0.0)
        return "x-listener"
    return "ghost" if kind == UNKNOWN else f"o-{kind}"


def state(room: Room) -> tuple[Any, ...]:
    return (room.stage.snapshot(), room.stage.attendance(), room.chat.history(), room.chat.pinned)


@pytest.mark.parametrize(("action", "actor_role", "kind"), list(cases()))
def test_permission(action: Action, actor_role: Role, kind: Kind) -> None:
    room = make_room(actor_role)
    target = target_id(kind)
    if any(m.id == target for m in room.stage.members()):
        prepare(room, action, target)
    call, event_type = CALLS[action]
    code = expected_code(action, actor_role, kind)
    before = state(room)
    if code is None:
        result = call(room, "actor", target, actor_role)
        if event_type is None:
            assert result is None
        else:
            assert isinstance(result, event_type)
    else:
        with pytest.raises(PodiumError) as refused:
            call(room, "actor", target, actor_role)
        assert refused.value.code == code, refused.value
        assert state(room) == before


def test_table_is_total() -> None:
    assert set(PERMISSIONS) == {(action, role) for action in Action for role in Role}
    assert set(EXPECTED) == set(Action)


@pytest.mark.parametrize("role", list(Role))
def test_require(role: Role) -> None:
    assert isinstance(require(Action.SEND_CHAT, role), Rule)
    if role is not H:
        with pytest.raises(PodiumError) as refused:
            require(Action.END_ROOM, role)
        assert refused.value.code == ErrorCode.NOT_PERMITTED


def test_only_listeners_are_off_stage() -> None:
    assert [role for role in Role if not role.on_stage] == [L]


def test_unknown_actor_is_refused() -> None:
    room = make_room(H)
    with pytest.raises(PodiumError) as refused:
        room.stage.mute("ghost", "o-speaker", NOW)
    assert refused.value.code == ErrorCode.NO_SUCH_PARTICIPANT
