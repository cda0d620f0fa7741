"""The HTTP/WebSocket server: ``/rtc`` signaling, health, and the room registry."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aiohttp import web

from sfu.rtc import selfcheck
from sfu.rtc.setup import configure
from signaling.config import ServerConfig
from signaling.room import Room
from signaling.session import Session

logger = logging.getLogger(__name__)


class PodiumServer:
    def __init__(self, config: ServerConfig) -> None:
        selfcheck.check()
        configure(config.media.announce_addresses)
        self.config = config
        self.rooms: dict[str, Room] = {}
        self.errors: Counter[str] = Counter()
        self.app = web.Application()
        self.app.add_routes([web.get("/rtc", self._rtc), web.get("/healthz", self._healthz)])
        self._runner: web.AppRunner | None = None
        self.port = config.port

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        if self.config.port == 0:
            self.port = self._runner.addresses[0][1]
        logger.info("Podium listening on %s", self.url)

    async def stop(self) -> None:
        for room in list(self.rooms.values()):
            await room.close("server_shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/rtc"

    # -- rooms -----------------------------------------------------------
    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, self.config, self._room_empty)
        return room

    async def _room_empty(self, room: Room) -> None:
        if self.rooms.get(room.name) is room and not room.participants:
            del self.rooms[room.name]
            await room.media.close()

    # -- accounting ------------------------------------------------------
    def count_error(self, code: str) -> None:
        self.errors[code] += 1

    def dump(self) -> dict[str, Any]:
        return {
            "rooms": {name: room.dump() for name, room in self.rooms.items()},
            "peer_connections": sum(len(r.media.peers) for r in self.rooms.values()),
            "routing_entries": sum(r.media.room.routing.entries for r in self.rooms.values()),
            "errors": dict(self.errors),
        }

    # -- HTTP handlers ---------------------------------------------------
    async def _rtc(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.config.keepalive_interval, max_msg_size=self.config.max_frame_bytes
        )
        await ws.prepare(request)
        await Session(ws, self).run()
        return ws

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "rooms": len(self.rooms)})
