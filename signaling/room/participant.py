"""A room member's connection and profile at the session level.

Role, hand and mute state live in the room's ``Stage``; this holds what the
token said about the person and where their messages go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from signaling.room.attendees import Attendee, Identity
from signaling.room.roles import Role
from signaling.wire.messages import Person
from signaling.wire.tokens import AccessToken


class Outbox(Protocol):
    """Where a participant's messages go; never blocks the sender (see Session)."""

    def send(self, text: str) -> None: ...

    def close(self, reason: str) -> None: ...


def identity_of(token: AccessToken) -> Identity:
    meta = token.metadata

    def text(key: str) -> str:
        value = meta.get(key, "")
        return value if isinstance(value, str) else ""

    return Identity(
        user_id=token.identity,
        name=token.name,
        headline=text("headline"),
        avatar_url=text("avatar_url"),
        profile_url=text("profile_url"),
    )


def person_info(who: Identity, role: Role, joined_at: float) -> Person:
    """The public view of a person: what attendee lists and the stage view carry."""
    return {
        "identity": who.user_id,
        "name": who.name,
        "headline": who.headline,
        "avatar_url": who.avatar_url,
        "profile_url": who.profile_url,
        "role": role,
        "joined_at": joined_at,
    }


def attendee_info(attendee: Attendee) -> Person:
    return person_info(attendee.identity, attendee.role, attendee.joined_at)


@dataclass(eq=False)
class Participant:
    identity: Identity
    metadata: Mapping[str, Any]
    outbox: Outbox = field(repr=False)

    @property
    def id(self) -> str:
        return self.identity.user_id
