"""A room member at the session level: identity, profile, role and its connection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from signaling.roles import Role
from signaling.tokens import PROFILE_FIELDS


class Outbox(Protocol):
    """Where a participant's messages go; never blocks the sender (see Session)."""

    def send(self, text: str) -> None: ...

    def close(self, reason: str) -> None: ...


@dataclass(eq=False)
class Participant:
    identity: str
    name: str
    role: Role
    metadata: Mapping[str, Any]
    joined_at: float
    outbox: Outbox = field(repr=False)

    @property
    def publishes(self) -> bool:
        """On stage: the media path forwards this participant's audio."""
        return self.role in (Role.HOST, Role.MODERATOR, Role.SPEAKER)

    def info(self) -> dict[str, Any]:
        profile = {k: self.metadata.get(k) for k in PROFILE_FIELDS if k in self.metadata}
        return {
            "identity": self.identity,
            "name": self.name,
            "role": str(self.role),
            "metadata": dict(self.metadata),
            **profile,
        }
