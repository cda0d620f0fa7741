"""The HTTP/WebSocket server: ``/rtc`` signaling, health, and the room registry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sfu.rtc import selfcheck
from sfu.rtc.media_room import MediaRoom, MediaRoomSetup
from sfu.rtc.reclaim import reclaimer
from sfu.rtc.setup import configure, host_addresses
from sfu.rtc.udp_mux import UdpMux
from signaling.room.media import MediaEventHandler, MediaFacade, PeerLostHandler
from signaling.room.resume import Endings
from signaling.room.room import Room
from signaling.room.settings import RoomSettings
from signaling.server import logs, tls
from signaling.server.api import ApiError, ServerApi
from signaling.server.config import ServerConfig
from signaling.server.demo import demo_routes
from signaling.server.guard import ConnectionCap, GuardedSite
from signaling.server.metrics import ServerMetrics
from signaling.server.runtime import LoopClock
from signaling.server.session import Session
from signaling.server.webhooks import Webhooks

if TYPE_CHECKING:
    from signaling.server.cluster.node import ClusterNode

logger = logging.getLogger(__name__)


class PodiumServer:
    def __init__(self, config: ServerConfig) -> None:
        selfcheck.check()
        configure(config.media.announce_addresses)
        self.config = config
        self.rooms: dict[str, Room] = {}
        self.endings = Endings(config.resume_window)  # outlives the rooms: an ended one goes
        self.errors: Counter[str] = Counter()
        self._empty_timers: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self.clock = LoopClock()
        self.webhooks = Webhooks(config)
        self.observer = logs.Observers(self.webhooks, logs.LogObserver())
        self.app = web.Application()
        self.app.add_routes([web.get("/rtc", self._rtc), web.get("/healthz", self._healthz)])
        ServerApi(self).install(self.app)  # /v1/... and /openapi.json
        self.metrics = ServerMetrics(self)
        self.metrics.install(self.app)  # /metrics, /readyz
        if config.serve_demo:  # development only: /dev/token mints tokens for anyone
            self.app.add_routes(demo_routes(config))
        self._runner: web.AppRunner | None = None
        self.listening = False
        self._tls = None  # read now: a bad certificate fails here, before anything is bound
        if config.tls_cert is not None:
            self._tls = tls.server_context(config.tls_cert, config.tls_key)
        self.connections = ConnectionCap(config.max_connections_per_address)
        self.draining = False
        self.port = config.port
        port = config.media.udp_port
        self.udp = (
            None
            if port is None
            else UdpMux(host_addresses(), port, config.media.ice_consent_timeout)
        )
        self.cluster: ClusterNode | None = None
        if config.cluster is not None:  # imported only here: a single process needs no Redis
            from signaling.server.cluster.node import ClusterNode

            self.cluster = ClusterNode(self, config.cluster)
            self.cluster.install(self.app, self.metrics.registry)

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        if self.udp is not None:
            await self.udp.start()
        await self.webhooks.start()
        # aiohttp closes a connection that has sent no complete request this long after
        # opening (or after its last response): idle sockets and unfinished headers.
        self._runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log_class=logs.QuietAccessLogger,
            keepalive_timeout=self.config.header_timeout,
        )
        await self._runner.setup()
        site = GuardedSite(
            self._runner, self.config.host, self.config.port, self.connections, self._tls
        )
        await site.start()
        if self.config.port == 0:
            self.port = self._runner.addresses[0][1]
        loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]  # uvloop or asyncio
        logger.info("Podium listening on %s (event loop: %s)", self.url, loop)
        self.listening = True
        if self.cluster is not None:
            await self.cluster.start(self.url)
        await self.metrics.start()

    async def stop(self) -> None:
        await self.metrics.stop()  # not ready from here on
        for timer in self._empty_timers.values():
            timer.cancel()
        self._empty_timers.clear()
        rooms = list(self.rooms.values())
        if self.listening:  # not after a start that failed
            logs.shutdown(len(rooms), sum(len(room.participants) for room in rooms))
        self.listening = False
        self.rooms.clear()  # first: a room emptied by closing must not be released (closed) again
        for room in rooms:
            await room.close("server_shutdown")
        if self.cluster is not None:
            await self.cluster.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.webhooks.close()  # after the rooms: their room_finished goes out too
        if self.udp is not None:
            self.udp.close()

    async def drain(self, timeout: float) -> None:
        """Stop taking joins, finish recordings, ask everyone to move; return once empty.

        ``/readyz`` fails from here on (a load balancer sends new rooms elsewhere);
        joins are refused with ``server_draining``; resumes still work.  Each client
        gets ``draining {deadline}``: time to finish and leave (a cluster would add
        where to go).  Returns when every room is empty or after ``timeout`` seconds;
        ``stop()`` then disconnects whoever is left.
        """
        self.draining = True
        self.metrics.ready = False
        deadline = time.time() + timeout
        for room in list(self.rooms.values()):
            if room.media.recording is not None:
                room.stop_recording("")
        moved = self.cluster is not None and await self.cluster.drain(deadline)
        if not moved:
            for room in list(self.rooms.values()):
                room.broadcast("draining", {"deadline": deadline})
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end and (
            any(room.participants for room in self.rooms.values())
            or (self.cluster is not None and self.cluster.busy)
        ):
            await asyncio.sleep(0.1)
        logger.info(
            "drained: %d participants left", sum(len(r.participants) for r in self.rooms.values())
        )

    @property
    def hooks(self) -> ServerMetrics:
        return self.metrics

    @property
    def url(self) -> str:
        scheme = "ws" if self.config.tls_cert is None else "wss"
        return f"{scheme}://{self.config.host}:{self.port}/rtc"

    # -- rooms -----------------------------------------------------------
    def room(self, name: str) -> Room:
        """The live room called ``name``; created by its first join."""
        room = self.rooms.get(name)
        if room is None or room.stage.ended:
            if self.cluster is not None:
                self.cluster.check_origin(name)
            room = self.rooms[name] = self._new_room(name, self.config.room)
        timer = self._empty_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        return room

    async def create_room(self, name: str, settings: RoomSettings) -> Room:
        """A room made ahead of its first join (server API): it waits ``empty_timeout`` for one."""
        if self.cluster is not None:
            origin = await self.cluster.origin_of(name)
            if origin != self.cluster.id:
                raise ApiError(409, "invalid_state", f"room {name!r} lives on node {origin!r}")
        room = self.rooms[name] = self._new_room(name, settings)
        await self.room_idle(room)
        return room

    def adopt_room(self, name: str, state: Mapping[str, Any]) -> Room:
        room = self.rooms[name] = self._new_room(name, self.config.room.restored(state["settings"]))
        room.restore(state)
        return room

    def forget_room(self, room: Room) -> None:
        """``room`` goes on elsewhere (a cluster hand-over): no longer served or closed here."""
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        timer = self._empty_timers.pop(room.name, None)
        if timer is not None:
            timer.cancel()

    def reconnect_urls(self) -> list[str]:
        return self.cluster.node_urls() if self.cluster is not None else []

    def _new_room(self, name: str, settings: RoomSettings) -> Room:
        return Room(
            name,
            settings,
            self._media,
            self.clock,
            self.room_idle,
            observer=self.observer,
            recordings_dir=self.config.recordings_dir,
            resume_window=self.config.resume_window,
            endings=self.endings,
        )

    def _media(
        self, name: str, on_event: MediaEventHandler, on_peer_lost: PeerLostHandler
    ) -> MediaFacade:
        setup = MediaRoomSetup(name, self.config.media, on_event, on_peer_lost, self.udp)
        if self.cluster is not None:
            return self.cluster.origin_media(setup)
        return MediaRoom(setup)

    async def room_idle(self, room: Room) -> None:
        """An ended room closes at once, an empty one after ``empty_timeout`` (so do its bans)."""
        if room.participants:
            return
        if room.stage.ended or room.settings.empty_timeout <= 0:
            await self.release_if_empty(room)
            return

        def release() -> None:
            closing = asyncio.ensure_future(self.release_if_empty(room))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

        loop = asyncio.get_running_loop()
        self._empty_timers[room.name] = loop.call_later(room.settings.empty_timeout, release)

    async def release_if_empty(self, room: Room) -> None:
        if self.rooms.get(room.name) is room and not room.participants:
            del self.rooms[room.name]
            timer = self._empty_timers.pop(room.name, None)
            if timer is not None:
                timer.cancel()
            await room.close("room_closed")
            self.metrics.room_closed(room)

    # -- accounting ------------------------------------------------------
    def count_error(self, code: str) -> None:
        self.errors[code] += 1

    def dump(self) -> dict[str, Any]:
        rooms = {name: room.dump() for name, room in self.rooms.items()}
        return {
            "rooms": rooms,
            "peer_connections": sum(len(r["media"]["peers"]) for r in rooms.values()),
            "routing_entries": sum(r["media"]["routing_entries"] for r in rooms.values()),
            "errors": dict(self.errors),
            "udp": self.udp.dump() if self.udp is not None else None,
            "cluster": self.cluster.dump() if self.cluster is not None else None,
        }

    # -- HTTP handlers ---------------------------------------------------
    async def _rtc(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.config.keepalive_interval, max_msg_size=self.config.max_frame_bytes
        )
        await ws.prepare(request)
        try:
            if self.cluster is not None:
                await self.cluster.serve(ws)
            else:
                await Session(ws, self).run()
        finally:
            _release(request, ws)
        return ws

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "rooms": len(self.rooms)})


def _release(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Break the cycles aiohttp (3.14) leaves behind a closed WebSocket, which only a full
    collection would free: the connection's protocol holds a method of the response
    (which holds the request, which holds the protocol), a pong timer that fired after the
    client went holds one too, and an abnormal close keeps its exception, whose traceback's
    frames hold the response. Nothing reads them once the socket has closed; a version
    without these attributes leaves its cycles to the reclaimer, which watches the response."""
    protocol = request.protocol
    if hasattr(protocol, "_data_received_cb"):
        protocol._data_received_cb = None
    cancel_heartbeat = getattr(ws, "_cancel_heartbeat", None)
    if cancel_heartbeat is not None:
        cancel_heartbeat()
    if hasattr(ws, "_exception"):
        ws._exception = None
    reclaimer.watch(ws)
