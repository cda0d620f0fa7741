"""The origin's media façade for a cluster room: its own peers, and everyone else's node.

The origin's core room holds a producer for every participant, wherever connected, so
its slot policy ranks the whole stage; a remote participant's peer connection lives on
its edge node, which this tells about every change the room decides (join, role, mute,
leave) in the same ordered stream as the participant's messages.  Edges forget a
relayed speaker the moment the origin stops routing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sfu.rtc.media_room import MediaRoomSetup
from sfu.rtc.relay import RelayedMediaRoom, RelayEndpoint

Command = Callable[[str, dict[str, Any]], None]
"""(node, message): sent to that node's inbox, in order."""
Placement = Callable[[str, str], tuple[str, str] | None]
"""(room, participant) → (edge node, connection id) it is served through now, None if here."""


class OriginMedia(RelayedMediaRoom):
    def __init__(
        self,
        setup: MediaRoomSetup,
        relay: RelayEndpoint,
        node_id: str,
        placement: Placement,
        command: Command,
    ) -> None:
        super().__init__(setup, relay, origin=None)
        self._node_id = node_id
        self._placement = placement
        self._command = command

    def _tell(
        self, node: str, op: str, participant: str, value: bool = False, **extra: str
    ) -> None:
        message = {"room": self.room.id, "origin": self._node_id, "pid": participant, **extra}
        self._command(node, {"t": "media", "op": op, "value": value, **message})

    def _on_stage(self, participant: str) -> bool:
        member = self.room.participants.get(participant)
        return member is not None and member.producer.allowed

    def _stop_relaying(self, participant: str) -> None:
        """Every edge but the speaker's own forgets it (listeners were never relayed)."""
        home = self.plan.node_of(participant)
        for edge in self.plan.edges:
            if edge != home:
                self._tell(edge, "drop", participant)

    def join(self, participant_id: str, may_publish: bool) -> None:
        super().join(participant_id, may_publish)
        self._place(participant_id)

    def _place(self, participant_id: str) -> None:
        """Tell the participant's edge (if any) to serve its media, and which connection it is."""
        where = self._placement(self.room.id, participant_id)
        if where is not None:
            edge, conn = where
            self.plan.place(participant_id, edge)
            member = self.room.participants[participant_id]
            self._tell(edge, "join", participant_id, member.producer.allowed, conn=conn)
            if member.producer.muted:
                self._tell(edge, "mute", participant_id, True)

    def reattach(self, participant_id: str) -> bool:
        """A resume through another node (or here): the media follows the connection."""
        where = self._placement(self.room.id, participant_id)
        old = self.plan.node_of(participant_id)
        if where is None and old is None:
            return super().reattach(participant_id)
        if self._on_stage(participant_id):
            self._stop_relaying(participant_id)
        if old is not None:
            self.plan.unplace(participant_id)
            self._tell(old, "leave", participant_id)
        self._drop_peer(participant_id)
        self._place(participant_id)
        return True

    async def leave(self, participant_id: str) -> None:
        if self._on_stage(participant_id):
            self._stop_relaying(participant_id)
        edge = self.plan.unplace(participant_id)
        await super().leave(participant_id)
        if edge is not None:
            self._tell(edge, "leave", participant_id)

    def set_publish_allowed(self, participant_id: str, allowed: bool) -> None:
        was_on_stage = self._on_stage(participant_id)
        super().set_publish_allowed(participant_id, allowed)
        if was_on_stage and not allowed:
            self._stop_relaying(participant_id)
        edge = self.plan.node_of(participant_id)
        if edge is not None:
            self._tell(edge, "allow", participant_id, allowed)

    def set_muted(self, participant_id: str, muted: bool) -> None:
        super().set_muted(participant_id, muted)
        if muted and self._on_stage(participant_id):
            self._stop_relaying(participant_id)
        edge = self.plan.node_of(participant_id)
        if edge is not None:
            self._tell(edge, "mute", participant_id, muted)
