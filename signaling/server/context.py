"""What the server's parts (sessions, the REST API, metrics) need of the server.

They depend on this protocol, not on ``PodiumServer``, so the server module can import
them without a cycle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

from sfu.rtc.udp_mux import UdpMux
from signaling.room.resume import Endings
from signaling.room.room import Room
from signaling.room.settings import RoomSettings
from signaling.server.config import ServerConfig


class RequestHooks(Protocol):
    """Per-request accounting (``ServerMetrics``); ``session`` is any weak-referenceable key."""

    def request_started(self, session: object, kind: str) -> None: ...

    def request_done(self, session: object, kind: str) -> None: ...


class ServerContext(Protocol):
    config: ServerConfig
    rooms: dict[str, Room]
    endings: Endings
    """Why seats ended lately, for the resumes that come after (rooms included)."""
    errors: Counter[str]
    udp: UdpMux | None
    draining: bool
    """SIGTERM: joins are refused (``server_draining``), resumes still served."""

    @property
    def hooks(self) -> RequestHooks: ...

    def room(self, name: str) -> Room:
        """The live room called ``name``, created by its first join."""
        ...

    async def create_room(self, name: str, settings: RoomSettings) -> Room: ...

    def adopt_room(self, name: str, state: Mapping[str, Any]) -> Room:
        """Go on with a room from the state another node left (a cluster takeover)."""
        ...

    def forget_room(self, room: Room) -> None:
        """Stop serving ``room`` without closing it: it goes on on another node."""
        ...

    def reconnect_urls(self) -> list[str]:
        """The nodes a client may resume through (a cluster's; empty for one process)."""
        ...

    async def room_idle(self, room: Room) -> None: ...

    async def release_if_empty(self, room: Room) -> None: ...

    def count_error(self, code: str) -> None: ...
