"""What a Room tells the world outside its WebSockets (webhooks), from one place each.

A Room calls these from the very code paths that change it: ``apply`` for every
stage event, ``remove`` for every departure whatever its cause, ``close`` when
it is gone. So an event caused by the server API and the same event caused by
a moderator's WebSocket request are reported identically. Implementations must
neither block nor raise: they run inside request handling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signaling.participant import Participant
    from signaling.room import Room
    from signaling.stage import StageEvent


class RoomObserver:
    """Does nothing; ``signaling.webhooks.Webhooks`` is the real one."""

    def room_started(self, room: Room) -> None:
        """``room`` was created (by the server API or by its first join)."""

    def stage_event(self, room: Room, event: StageEvent, now: float) -> None:
        """``room.apply`` carried ``event`` out."""

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        """``participant`` is gone, for ``reason`` (the one its client was told)."""

    def room_finished(self, room: Room, reason: str) -> None:
        """``room`` closed: everyone has left, its media is being released."""


NO_OBSERVER = RoomObserver()
