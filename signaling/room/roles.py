"""Roles, actions and the permission table of a Podium room.

The table is data, not code, so that it can be reviewed (and documented) at a
glance and so that one test can check it exhaustively. Only *authority* lives
here; whether a request makes sense in the current state (inviting someone who
is already on stage, unmuting someone who is not muted) is the state machine's
business and yields a different error code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from types import MappingProxyType

from signaling.wire.errors import ErrorCode, PodiumError


class Role(StrEnum):
    """Declared from most to least authority; that order is also display order."""

    HOST = "host"
    MODERATOR = "moderator"
    SPEAKER = "speaker"
    LISTENER = "listener"

    @property
    def on_stage(self) -> bool:
        """Everyone but a listener is on stage, and only the stage may publish audio."""
        return self is not Role.LISTENER


class Action(StrEnum):
    RAISE_HAND = "raise_hand"
    LOWER_HAND = "lower_hand"
    INVITE_TO_STAGE = "invite_to_stage"
    CANCEL_INVITE = "cancel_invite"
    ACCEPT_INVITE = "accept_invite"
    DECLINE_INVITE = "decline_invite"
    MOVE_TO_AUDIENCE = "move_to_audience"
    PROMOTE = "promote"  # one step up: speaker -> moderator -> host
    DEMOTE = "demote"  # one step down: host -> moderator -> speaker
    MUTE = "mute"
    UNMUTE = "unmute"
    REMOVE = "remove"
    BAN = "ban"  # remove, and refuse the identity for the room's lifetime
    END_ROOM = "end_room"
    SEND_CHAT = "send_chat"
    REACT = "react"
    PIN_MESSAGE = "pin_message"  # set or clear the pinned message
    VIEW_ATTENDANCE = "view_attendance"
    SET_MEDIA_MODE = "set_media_mode"  # forward, mix or auto
    RECORD = "record"  # start or stop recording the room


class Target(Enum):
    SELF = "self"
    OTHERS = "others"
    ANY = "any"  # self or others
    ROOM = "room"  # the action has no participant target


@dataclass(frozen=True, slots=True)
class Rule:
    """An allowed (action, actor role): on whom, and which roles of others are off limits."""

    target: Target
    spares: frozenset[Role] = frozenset()

    @property
    def on_self(self) -> bool:
        return self.target in (Target.SELF, Target.ANY)

    @property
    def on_others(self) -> bool:
        return self.target in (Target.OTHERS, Target.ANY)


_NO = None
_SELF = Rule(Target.SELF)
_OTHERS = Rule(Target.OTHERS)
_ANY = Rule(Target.ANY)
_ROOM = Rule(Target.ROOM)
# A moderator's authority stops at hosts; for PROMOTE it also stops at peers,
# because only a host may make another host.
_OTHERS_NOT_HOSTS = Rule(Target.OTHERS, frozenset({Role.HOST}))
_ANY_NOT_HOSTS = Rule(Target.ANY, frozenset({Role.HOST}))
_SPEAKERS_ONLY = Rule(Target.OTHERS, frozenset({Role.HOST, Role.MODERATOR}))

_H, _M, _S, _L = Role.HOST, Role.MODERATOR, Role.SPEAKER, Role.LISTENER
_COLUMNS = (_H, _M, _S, _L)

# fmt: off
_TABLE: dict[Action, tuple[Rule | None, Rule | None, Rule | None, Rule | None]] = {
    #                         host      moderator          speaker  listener
    Action.RAISE_HAND:       (_NO,     _NO,               _NO,     _SELF),
    Action.LOWER_HAND:       (_OTHERS, _OTHERS,           _NO,     _SELF),
    Action.INVITE_TO_STAGE:  (_OTHERS, _OTHERS,           _NO,     _NO),
    Action.CANCEL_INVITE:    (_OTHERS, _OTHERS,           _NO,     _NO),
    Action.ACCEPT_INVITE:    (_NO,     _NO,               _NO,     _SELF),
    Action.DECLINE_INVITE:   (_NO,     _NO,               _NO,     _SELF),
    Action.MOVE_TO_AUDIENCE: (_OTHERS, _ANY_NOT_HOSTS,    _SELF,   _NO),
    Action.PROMOTE:          (_OTHERS, _SPEAKERS_ONLY,    _NO,     _NO),
    Action.DEMOTE:           (_OTHERS, _ANY_NOT_HOSTS,    _NO,     _NO),
    Action.MUTE:             (_ANY,    _ANY_NOT_HOSTS,    _SELF,   _NO),
    Action.UNMUTE:           (_SELF,   _SELF,             _SELF,   _NO),
    Action.REMOVE:           (_OTHERS, _OTHERS_NOT_HOSTS, _NO,     _NO),
    Action.BAN:              (_OTHERS, _OTHERS_NOT_HOSTS, _NO,     _NO),
    Action.END_ROOM:         (_ROOM,   _NO,               _NO,     _NO),
    Action.SEND_CHAT:        (_ROOM,   _ROOM,             _ROOM,   _ROOM),
    Action.REACT:            (_ROOM,   _ROOM,             _ROOM,   _ROOM),
    Action.PIN_MESSAGE:      (_ROOM,   _ROOM,             _NO,     _NO),
    Action.VIEW_ATTENDANCE:  (_ROOM,   _ROOM,             _NO,     _NO),
    Action.SET_MEDIA_MODE:   (_ROOM,   _NO,               _NO,     _NO),
    Action.RECORD:           (_ROOM,   _NO,               _NO,     _NO),
}
# fmt: on

PERMISSIONS: Mapping[tuple[Action, Role], Rule | None] = MappingProxyType(
    {
        (action, role): rule
        for action, row in _TABLE.items()
        for role, rule in zip(_COLUMNS, row, strict=True)
    }
)
"""Every (action, actor role) pair; ``None`` means the role may never take the action."""


def require(action: Action, role: Role) -> Rule:
    """The rule for ``role`` taking ``action``; ``not_permitted`` if it never may."""
    rule = PERMISSIONS[action, role]
    if rule is None:
        raise PodiumError(ErrorCode.NOT_PERMITTED, f"a {role} may not {action}")
    return rule
