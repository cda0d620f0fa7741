"""Stage and moderation state machine of one room (sans-I/O).

No clock and no I/O: the caller passes ``now`` and broadcasts what comes back.
Every request either returns the single event it caused or raises
``PodiumError`` having changed nothing, so a refused request can be answered
without undo logic. Checks run in a fixed order: room open, actor known,
permission (``roles.PERMISSIONS``), target known, then state preconditions.

Nobody goes on stage without consenting: a listener becomes a speaker only by
accepting an invitation, whether or not they raised a hand first, and they
arrive self-muted (those whose token puts them on stage join unmuted unless
``StageConfig.join_muted``). Nobody's microphone is opened by someone else either: a
moderator can mute anyone below a host, but unmuting is always done by the
participant themself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from signaling.room.attendees import Identity
from signaling.room.ratelimit import Rate, RateLimiter
from signaling.room.roles import Action, Role, Rule, require
from signaling.wire.errors import ErrorCode, PodiumError

# PROMOTE and DEMOTE move one rung; listeners are not on the ladder because the
# only way onto the stage is an accepted invitation.
_LADDER = (Role.SPEAKER, Role.MODERATOR, Role.HOST)


@dataclass(frozen=True, slots=True)
class StageConfig:
    max_participants: int = 5000
    # Hosts, moderators and speakers together: each is a publisher the SFU forwards.
    max_on_stage: int = 20
    # Whether someone whose token puts them on stage joins muted. Entering the
    # stage later (accepted invitation, promotion) is always muted.
    join_muted: bool = False
    # Raising and lowering one's own hand each reach every moderator (and the webhooks):
    # bursts of 6 (three up-and-downs), then one per 10/6 s; ``rate_limited`` beyond.
    hand_rate: Rate = field(default_factory=lambda: Rate(6, 10.0))

    def __post_init__(self) -> None:
        if self.max_participants < 1 or self.max_on_stage < 1:
            raise ValueError(f"invalid stage config: {self}")


@dataclass(frozen=True, slots=True)
class Member:
    """A participant as the stage sees them; replaced, never mutated, on every change."""

    id: str
    identity: Identity
    role: Role
    joined_at: float
    invited_by: str | None = None
    # None: unmuted; the participant's own id: self-muted; anyone else's: muted by them.
    muted_by: str | None = None

    @property
    def on_stage(self) -> bool:
        return self.role.on_stage

    @property
    def muted(self) -> bool:
        return self.muted_by is not None

    @property
    def muted_by_moderator(self) -> bool:
        return self.muted_by is not None and self.muted_by != self.id


@dataclass(frozen=True, slots=True)
class Joined:
    participant: str
    identity: Identity
    role: Role


@dataclass(frozen=True, slots=True)
class Left:
    """Also withdraws the participant's raised hand and pending invitation."""

    participant: str


@dataclass(frozen=True, slots=True)
class HandRaised:
    participant: str
    at: float


@dataclass(frozen=True, slots=True)
class HandLowered:
    participant: str
    by: str


@dataclass(frozen=True, slots=True)
class Invited:
    participant: str
    by: str


@dataclass(frozen=True, slots=True)
class InviteCancelled:
    participant: str
    by: str


@dataclass(frozen=True, slots=True)
class InviteDeclined:
    """The declining listener keeps a raised hand raised."""

    participant: str


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """Entering the stage clears the hand and the invitation and starts self-muted."""

    participant: str
    old: Role
    new: Role
    by: str  # the participant themself when accepting an invitation

    @property
    def can_publish(self) -> bool:
        return self.new.on_stage


@dataclass(frozen=True, slots=True)
class Muted:
    participant: str
    by: str
    muted: bool


@dataclass(frozen=True, slots=True)
class Removed:
    participant: str
    by: str
    banned: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RoomEnded:
    """Everyone has left; every later request fails with ``room_ended``."""

    by: str


@dataclass(frozen=True, slots=True)
class ProfileChanged:
    """The platform renamed someone or changed their profile (server API only)."""

    participant: str
    identity: Identity


StageEvent = (
    Joined
    | Left
    | HandRaised
    | HandLowered
    | Invited
    | InviteCancelled
    | InviteDeclined
    | RoleChanged
    | Muted
    | Removed
    | RoomEnded
    | ProfileChanged
)

SERVER = ""
"""``by`` of what the server API did: the platform itself, never a member (identities
are never empty). It has every right a host has over others, and no seat."""


@dataclass(frozen=True, slots=True)
class Visit:
    """One continuous presence of an identity in the room."""

    participant: str
    joined_at: float
    left_at: float | None  # None while still in the room
    roles: tuple[tuple[Role, float], ...]  # (role, since), in the order held


@dataclass(frozen=True, slots=True)
class AttendanceRecord:
    identity: Identity  # as of the latest visit
    visits: tuple[Visit, ...]


@dataclass(frozen=True, slots=True)
class StageSnapshot:
    ended: bool
    members: tuple[Member, ...]  # in join order
    hands: tuple[tuple[str, float], ...]  # (participant, raised at), queue order
    banned: tuple[str, ...]  # user ids, sorted


class Stage:
    def __init__(self, config: StageConfig | None = None) -> None:
        self.config = config or StageConfig()
        self._members: dict[str, Member] = {}
        self._by_user: dict[str, str] = {}  # user id -> participant id
        # Who is on stage, and everyone's place in join order: a join into a big audience
        # counts and lists the stage without walking the audience.
        self._on_stage: set[str] = set()
        self._places: dict[str, int] = {}
        self._joins = itertools.count()
        # Insertion order is the order hands went up: the queue moderators work through.
        self._hands: dict[str, float] = {}
        self._banned: set[str] = set()
        self._attendance: dict[str, AttendanceRecord] = {}
        self._ended = False
        self._hand_limits = RateLimiter(self.config.hand_rate)

    # Queries.

    @property
    def ended(self) -> bool:
        return self._ended

    def __contains__(self, participant_id: object) -> bool:
        return participant_id in self._members

    def member(self, participant_id: str) -> Member:
        member = self._members.get(participant_id)
        if member is None:
            raise PodiumError(
                ErrorCode.NO_SUCH_PARTICIPANT, f"{participant_id!r} is not in this room"
            )
        return member

    def members(self) -> list[Member]:
        return list(self._members.values())

    def on_stage(self) -> list[Member]:
        """Hosts and speakers, in join order (as ``members()`` lists them)."""
        return [self._members[pid] for pid in sorted(self._on_stage, key=self._places.__getitem__)]

    def hand_queue(self) -> list[str]:
        return list(self._hands)

    def is_banned(self, user_id: str) -> bool:
        return user_id in self._banned

    def attendance(self) -> list[AttendanceRecord]:
        """Unchecked, for the server; gate client requests with ``VIEW_ATTENDANCE``."""
        return list(self._attendance.values())

    def snapshot(self) -> StageSnapshot:
        return StageSnapshot(
            ended=self._ended,
            members=tuple(self._members.values()),
            hands=tuple(self._hands.items()),
            banned=tuple(sorted(self._banned)),
        )

    def state(self) -> dict[str, Any]:
        """Everything the stage decided, as JSON-able data (``restore_state`` reads it back)."""
        return {
            "ended": self._ended,
            "members": [_member_state(m) for m in self._members.values()],
            "hands": [[pid, at] for pid, at in self._hands.items()],
            "banned": sorted(self._banned),
            "attendance": [_record_state(r) for r in self._attendance.values()],
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Become the stage ``state`` describes (a room taken over from another node)."""
        self._ended = bool(state["ended"])
        self._members = {m["id"]: _member_from(m) for m in state["members"]}
        self._by_user = {m.identity.user_id: pid for pid, m in self._members.items()}
        self._on_stage = {pid for pid, m in self._members.items() if m.on_stage}
        self._places = {pid: next(self._joins) for pid in self._members}
        self._hands = {pid: float(at) for pid, at in state["hands"] if pid in self._members}
        self._banned = set(state["banned"])
        self._attendance = {}
        for entry in state["attendance"]:
            record = _record_from(entry)
            self._attendance[record.identity.user_id] = record

    def authorize(self, actor_id: str, action: Action, target_id: str | None = None) -> None:
        """Raise unless the actor may take ``action`` (on ``target_id``, if given) now."""
        if target_id is None:
            self._actor(actor_id, action)
        else:
            self._authorize(actor_id, action, target_id)

    # Requests.

    def join(self, participant_id: str, identity: Identity, role: Role, now: float) -> Joined:
        """Admit an authenticated participant; the role comes from their access token."""
        self._require_open()
        if participant_id in self._members or identity.user_id in self._by_user:
            raise PodiumError(ErrorCode.ALREADY_IN_ROOM, f"{identity.user_id!r} is already here")
        self.check_admission(identity, role)
        self._members[participant_id] = Member(
            participant_id,
            identity,
            role,
            joined_at=now,
            muted_by=participant_id if role.on_stage and self.config.join_muted else None,
        )
        self._by_user[identity.user_id] = participant_id
        self._places[participant_id] = next(self._joins)
        if role.on_stage:
            self._on_stage.add(participant_id)
        record = self._attendance.get(identity.user_id)
        visit = Visit(participant_id, now, None, ((role, now),))
        self._attendance[identity.user_id] = AttendanceRecord(
            identity, (record.visits if record else ()) + (visit,)
        )
        return Joined(participant_id, identity, role)

    def check_admission(self, identity: Identity, role: Role, replacing: str | None = None) -> None:
        """Raise what ``join`` would for the room's limits, as if ``replacing`` had left:
        a second session of one identity must not cost the first its seat and then be
        refused itself."""
        self._require_open()
        if identity.user_id in self._banned:
            raise PodiumError(ErrorCode.BANNED, f"{identity.user_id!r} is banned from this room")
        others = len(self._members) - (replacing in self._members)
        if others >= self.config.max_participants:
            raise PodiumError(ErrorCode.ROOM_FULL, "the room is full")
        on_stage = len(self._on_stage) - (replacing in self._on_stage)
        if role.on_stage and on_stage >= self.config.max_on_stage:
            raise PodiumError(ErrorCode.STAGE_FULL, "the stage is full")

    def leave(self, participant_id: str, now: float) -> Left:
        self._require_open()
        self.member(participant_id)
        self._drop(participant_id, now)
        return Left(participant_id)

    def raise_hand(self, actor_id: str, now: float) -> HandRaised:
        self._authorize(actor_id, Action.RAISE_HAND, actor_id)
        if actor_id in self._hands:
            raise PodiumError(ErrorCode.HAND_ALREADY_RAISED, "your hand is already raised")
        self._hand_limits.take(actor_id, now)
        self._hands[actor_id] = now
        return HandRaised(actor_id, now)

    def lower_hand(self, actor_id: str, target_id: str, now: float) -> HandLowered:
        self._authorize(actor_id, Action.LOWER_HAND, target_id)
        if target_id not in self._hands:
            raise PodiumError(ErrorCode.HAND_NOT_RAISED, f"{target_id!r} has no hand raised")
        if target_id == actor_id:  # moderators working through the queue are not limited
            self._hand_limits.take(actor_id, now)
        del self._hands[target_id]
        return HandLowered(target_id, actor_id)

    def invite_to_stage(self, actor_id: str, target_id: str, now: float) -> Invited:
        target = self._authorize(actor_id, Action.INVITE_TO_STAGE, target_id)
        if target.on_stage:
            raise PodiumError(ErrorCode.ALREADY_ON_STAGE, f"{target_id!r} is already on stage")
        if target.invited_by is not None:
            raise PodiumError(ErrorCode.ALREADY_INVITED, f"{target_id!r} is already invited")
        self._require_stage_seat()
        self._members[target_id] = replace(target, invited_by=actor_id)
        return Invited(target_id, actor_id)

    def cancel_invite(self, actor_id: str, target_id: str, now: float) -> InviteCancelled:
        target = self._invitee(actor_id, Action.CANCEL_INVITE, target_id)
        self._members[target_id] = replace(target, invited_by=None)
        return InviteCancelled(target_id, actor_id)

    def accept_invite(self, actor_id: str, now: float) -> RoleChanged:
        actor = self._invitee(actor_id, Action.ACCEPT_INVITE, actor_id)
        self._require_stage_seat()
        return self._change_role(actor, Role.SPEAKER, actor_id, now)

    def decline_invite(self, actor_id: str, now: float) -> InviteDeclined:
        actor = self._invitee(actor_id, Action.DECLINE_INVITE, actor_id)
        self._members[actor_id] = replace(actor, invited_by=None)
        return InviteDeclined(actor_id)

    def move_to_audience(self, actor_id: str, target_id: str, now: float) -> RoleChanged:
        target = self._authorize(actor_id, Action.MOVE_TO_AUDIENCE, target_id)
        _require_on_stage(target)
        return self._change_role(target, Role.LISTENER, actor_id, now)

    def promote(self, actor_id: str, target_id: str, now: float) -> RoleChanged:
        return self._climb(actor_id, Action.PROMOTE, target_id, now, step=1)

    def demote(self, actor_id: str, target_id: str, now: float) -> RoleChanged:
        return self._climb(actor_id, Action.DEMOTE, target_id, now, step=-1)

    def mute(self, actor_id: str, target_id: str, now: float) -> Muted:
        return self._set_muted(actor_id, target_id, muted=True)

    def unmute(self, actor_id: str, target_id: str, now: float) -> Muted:
        return self._set_muted(actor_id, target_id, muted=False)

    def remove(
        self, actor_id: str, target_id: str, now: float, *, ban: bool = False, reason: str = ""
    ) -> Removed:
        target = self._authorize(actor_id, Action.BAN if ban else Action.REMOVE, target_id)
        return self._remove(target, actor_id, now, ban, reason)

    def end_room(self, actor_id: str, now: float) -> RoomEnded:
        self._actor(actor_id, Action.END_ROOM)
        return self._end(actor_id, now)

    # Server API requests: the platform's backend, not a member, acting on one. Each makes
    # the same change, with the same checks on the target, as the moderator request named.

    def server_set_role(self, target_id: str, role: Role, now: float) -> RoleChanged:
        """Any role to any other, like a fresh token would: entering the stage still means
        arriving self-muted, so only the participant ever opens their microphone."""
        self._require_open()
        target = self.member(target_id)
        if role is target.role:
            raise PodiumError(ErrorCode.INVALID_REQUEST, f"{target_id!r} already is a {role}")
        if role.on_stage and not target.on_stage:
            self._require_stage_seat()
        return self._change_role(target, role, SERVER, now)

    def server_mute(self, target_id: str, now: float) -> Muted:
        """As ``mute`` by a host. There is no server unmute."""
        self._require_open()
        return self._mute(self.member(target_id), SERVER, muted=True)

    def server_remove(
        self, target_id: str, now: float, *, ban: bool = False, reason: str = ""
    ) -> Removed:
        self._require_open()
        return self._remove(self.member(target_id), SERVER, now, ban, reason)

    def server_end_room(self, now: float) -> RoomEnded:
        self._require_open()
        return self._end(SERVER, now)

    def server_set_profile(self, target_id: str, identity: Identity, now: float) -> ProfileChanged:
        """New name and profile for the same person (``user_id`` cannot change)."""
        self._require_open()
        target = self.member(target_id)
        if identity.user_id != target.identity.user_id:
            raise PodiumError(ErrorCode.INVALID_REQUEST, "a profile cannot change the user id")
        self._members[target_id] = replace(target, identity=identity)
        record = self._attendance[identity.user_id]
        self._attendance[identity.user_id] = replace(record, identity=identity)
        return ProfileChanged(target_id, identity)

    # Checks: each raises before anything is changed.

    def _require_open(self) -> None:
        if self._ended:
            raise PodiumError(ErrorCode.ROOM_ENDED, "the room has ended")

    def _actor(self, actor_id: str, action: Action) -> tuple[Member, Rule]:
        self._require_open()
        actor = self.member(actor_id)
        return actor, require(action, actor.role)

    def _authorize(self, actor_id: str, action: Action, target_id: str) -> Member:
        """Return the target. Whether it exists is checked only once the actor could
        act on others, so a refused request never reveals who is in the room."""
        actor, rule = self._actor(actor_id, action)
        if target_id == actor_id:
            if not rule.on_self:
                raise _not_permitted(actor, action, "themself")
            return actor
        if not rule.on_others:
            raise _not_permitted(actor, action, "others")
        target = self._members.get(target_id)
        if target is None:
            raise PodiumError(ErrorCode.NOT_IN_ROOM, f"{target_id!r} is not in this room")
        if target.role in rule.spares:
            raise _not_permitted(actor, action, f"a {target.role}")
        return target

    def _invitee(self, actor_id: str, action: Action, target_id: str) -> Member:
        target = self._authorize(actor_id, action, target_id)
        if target.invited_by is None:
            raise PodiumError(ErrorCode.NO_INVITATION, f"{target_id!r} has no pending invitation")
        return target

    def _require_stage_seat(self) -> None:
        if sum(m.on_stage for m in self._members.values()) >= self.config.max_on_stage:
            raise PodiumError(ErrorCode.STAGE_FULL, "the stage is full")

    # Changes: called only once every check has passed.

    def _climb(
        self, actor_id: str, action: Action, target_id: str, now: float, *, step: int
    ) -> RoleChanged:
        target = self._authorize(actor_id, action, target_id)
        _require_on_stage(target)
        rung = _LADDER.index(target.role) + step
        if not 0 <= rung < len(_LADDER):
            raise PodiumError(
                ErrorCode.INVALID_REQUEST,
                f"cannot {action} a {target.role}: stage roles are {', '.join(_LADDER)}"
                " (use move_to_audience to leave the stage)",
            )
        return self._change_role(target, _LADDER[rung], actor_id, now)

    def _set_muted(self, actor_id: str, target_id: str, *, muted: bool) -> Muted:
        target = self._authorize(actor_id, Action.MUTE if muted else Action.UNMUTE, target_id)
        return self._mute(target, actor_id, muted=muted)

    def _mute(self, target: Member, by: str, *, muted: bool) -> Muted:
        _require_on_stage(target)
        if target.muted == muted:
            code = ErrorCode.ALREADY_MUTED if muted else ErrorCode.NOT_MUTED
            raise PodiumError(code, f"{target.id!r} is {'already' if muted else 'not'} muted")
        self._members[target.id] = replace(target, muted_by=by if muted else None)
        return Muted(target.id, by, muted)

    def _remove(self, target: Member, by: str, now: float, ban: bool, reason: str) -> Removed:
        self._drop(target.id, now)
        if ban:
            self._banned.add(target.identity.user_id)
        return Removed(target.id, by, ban, reason)

    def _end(self, by: str, now: float) -> RoomEnded:
        for participant_id in list(self._members):
            self._drop(participant_id, now)
        self._ended = True
        return RoomEnded(by)

    def _change_role(self, target: Member, new: Role, by: str, now: float) -> RoleChanged:
        if not new.on_stage:
            muted_by = None
        elif target.on_stage:
            muted_by = target.muted_by
        else:  # entering the stage: never with an open microphone
            muted_by = target.id
            self._hands.pop(target.id, None)
        self._members[target.id] = replace(target, role=new, invited_by=None, muted_by=muted_by)
        if new.on_stage:
            self._on_stage.add(target.id)
        else:
            self._on_stage.discard(target.id)
        self._update_visit(target, lambda v: replace(v, roles=(*v.roles, (new, now))))
        return RoleChanged(target.id, target.role, new, by)

    def _drop(self, participant_id: str, now: float) -> None:
        member = self._members.pop(participant_id)
        self._on_stage.discard(participant_id)
        del self._places[participant_id]
        self._hands.pop(participant_id, None)
        self._hand_limits.forget(participant_id)
        del self._by_user[member.identity.user_id]
        self._update_visit(member, lambda v: replace(v, left_at=now))

    def _update_visit(self, member: Member, change: Callable[[Visit], Visit]) -> None:
        record = self._attendance[member.identity.user_id]
        *earlier, current = record.visits
        self._attendance[member.identity.user_id] = replace(
            record, visits=(*earlier, change(current))
        )


def _member_state(member: Member) -> dict[str, Any]:
    return {
        "id": member.id,
        "identity": asdict(member.identity),
        "role": str(member.role),
        "joined_at": member.joined_at,
        "invited_by": member.invited_by,
        "muted_by": member.muted_by,
    }


def _member_from(state: Mapping[str, Any]) -> Member:
    return Member(
        state["id"],
        Identity(**state["identity"]),
        Role(state["role"]),
        float(state["joined_at"]),
        state["invited_by"],
        state["muted_by"],
    )


def _record_state(record: AttendanceRecord) -> dict[str, Any]:
    return {
        "identity": asdict(record.identity),
        "visits": [
            {
                "participant": v.participant,
                "joined_at": v.joined_at,
                "left_at": v.left_at,
                "roles": [[str(role), since] for role, since in v.roles],
            }
            for v in record.visits
        ],
    }


def _record_from(state: Mapping[str, Any]) -> AttendanceRecord:
    visits = tuple(
        Visit(
            v["participant"],
            float(v["joined_at"]),
            v["left_at"],
            tuple((Role(role), float(since)) for role, since in v["roles"]),
        )
        for v in state["visits"]
    )
    return AttendanceRecord(Identity(**state["identity"]), visits)


def _require_on_stage(target: Member) -> None:
    if not target.on_stage:
        raise PodiumError(ErrorCode.NOT_ON_STAGE, f"{target.id!r} is not on stage")


def _not_permitted(actor: Member, action: Action, whom: str) -> PodiumError:
    return PodiumError(ErrorCode.NOT_PERMITTED, f"a {actor.role} may not {action} {whom}")
