"""JSON views of rooms and participants for the server API and webhooks.

One function per shape, so that what ``GET /v1/rooms/{room}`` returns and what
``room_started`` carries cannot drift apart (both typed once, in ``signaling.wire.rest``).
They read the live Stage, not the batched attendee list: a backend acting on a
participant must see them the moment they joined.
"""

from __future__ import annotations

from collections.abc import Collection

from sfu.mixer import MediaMode
from signaling.room.attendees import AttendeePage
from signaling.room.participant import attendee_info, person_info
from signaling.room.roles import Role
from signaling.room.room import Room
from signaling.room.settings import RoomSettings
from signaling.room.stage import AttendanceRecord, Member
from signaling.wire import rest
from signaling.wire.messages import AttendanceRecord as AttendanceInfo
from signaling.wire.messages import AttendeePage as AttendeePageInfo
from signaling.wire.messages import counts as role_counts


def settings_view(settings: RoomSettings) -> rest.RoomSettings:
    return {
        "max_participants": settings.stage.max_participants,
        "max_speakers": settings.stage.max_on_stage,
        "media_mode": MediaMode(settings.media_mode),
        "empty_timeout": settings.empty_timeout,
    }


def room_view(room: Room) -> rest.Room:
    counts = dict.fromkeys(Role, 0)
    for member in room.stage.members():
        counts[member.role] += 1
    return {
        "name": room.name,
        "sid": room.sid,
        "created_at": room.created_at,
        "num_participants": sum(counts.values()),
        "counts": role_counts(counts),
        "settings": settings_view(room.settings),
        "metadata": dict(room.settings.metadata),
    }


def participant_view(room: Room, member: Member, hands: Collection[str]) -> rest.Participant:
    """``hands``: the raised hands (``room.stage.hand_queue()``, as a set for big pages)."""
    participant = room.participants.get(member.id)
    return {
        **person_info(member.identity, member.role, member.joined_at),
        "muted": member.muted,
        "hand_raised": member.id in hands,
        "invited": member.invited_by is not None,
        "metadata": dict(participant.metadata) if participant is not None else {},
    }


def page_info(page: AttendeePage) -> AttendeePageInfo:
    return {
        "items": [attendee_info(a) for a in page.items],
        "next_cursor": page.next_cursor,
        "total": page.total,
        "version": page.version,
    }


def attendance_info(record: AttendanceRecord) -> AttendanceInfo:
    return {
        "identity": record.identity.user_id,
        "name": record.identity.name,
        "visits": [
            {
                "joined_at": v.joined_at,
                "left_at": v.left_at,
                "roles": [{"role": role, "since": since} for role, since in v.roles],
            }
            for v in record.visits
        ],
    }
