"""A room at the session level: participants, their connections, and its media room."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sfu.events import RouterEvent, SlotsChanged
from sfu.rtc.media_room import MediaRoom
from signaling.config import ServerConfig
from signaling.participant import Outbox, Participant
from signaling.protocol import encode_event
from signaling.tokens import AccessToken

logger = logging.getLogger(__name__)


class Room:
    def __init__(
        self, name: str, config: ServerConfig, on_empty: Callable[[Room], Awaitable[None]]
    ) -> None:
        self.name = name
        self.config = config
        self.created_at = time.time()
        self.participants: dict[str, Participant] = {}
        self.media = MediaRoom(name, config.media, self._media_event, self._peer_lost)
        self._on_empty = on_empty

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created_at": self.created_at,
            "num_participants": len(self.participants),
        }

    async def admit(self, token: AccessToken, outbox: Outbox) -> Participant:
        """Add a participant; an identity already present is replaced (its old session closed)."""
        previous = self.participants.get(token.identity)
        if previous is not None:
            await self.remove(token.identity, "duplicate_identity")
        participant = Participant(
            token.identity, token.name, token.role, token.metadata, time.time(), outbox
        )
        self.participants[participant.identity] = participant
        self.media.join(participant.identity, participant.publishes)
        self.broadcast("participant_joined", participant.info(), exclude=participant.identity)
        return participant

    async def remove(self, identity: str, reason: str) -> None:
        """Release everything the participant holds: routing, slots, peer connection."""
        participant = self.participants.pop(identity, None)
        if participant is None:
            return
        await self.media.leave(identity)
        participant.outbox.close(reason)
        self.broadcast("participant_left", {"identity": identity, "reason": reason})
        if not self.participants:
            await self._on_empty(self)

    def broadcast(self, event: str, data: dict[str, Any], exclude: str | None = None) -> None:
        """Encode once, enqueue to everyone: a slow client never delays the others."""
        text = encode_event(event, data)
        for identity, participant in list(self.participants.items()):
            if identity != exclude:
                participant.outbox.send(text)

    def _media_event(self, event: RouterEvent) -> None:
        if isinstance(event, SlotsChanged):
            participant = self.participants.get(event.subscriber_id)
            if participant is not None:
                participant.outbox.send(encode_event("slots", {"slots": list(event.slots)}))

    async def _peer_lost(self, identity: str, state: str) -> None:
        logger.info("room %s: %s's peer connection %s", self.name, identity, state)
        await self.remove(identity, "media_failed")

    async def close(self, reason: str) -> None:
        for identity in list(self.participants):
            await self.remove(identity, reason)
        await self.media.close()

    def dump(self) -> dict[str, Any]:
        return {
            **self.info(),
            "participants": [p.info() for p in self.participants.values()],
            "media": self.media.dump(),
        }
