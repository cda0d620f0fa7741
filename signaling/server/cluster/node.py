"""This process as a node of a Podium cluster (docs/cluster.md).

- **Registry**: the node's hash (id, signaling URL, media port, relay address and key,
  load) is rewritten every heartbeat with a short TTL, and its id scored by heartbeat
  time in the nodes set; a node that stops beating is gone within ``node_ttl``.
- **Origins**: the first node a room's first client reaches claims the room
  (``SET NX`` with a TTL its heartbeat refreshes while the room lives there).
- **Signaling**: a client of a room whose origin is elsewhere stays connected here
  (``EdgeSession``); its frames go to the origin's inbox channel, where a ``Session``
  with a ``RemoteSocket`` serves it; replies, events and media commands come back in
  this node's inbox.  Everything a node sends goes out through one ordered pipeline,
  so a media command is always before the reply that depends on it.
- **Media**: ``sfu.rtc.relay`` between the nodes, with the peer table (addresses,
  keys) read from the registry every heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from sfu.events import RouterEvent, SlotsChanged
from sfu.mixer import MIX, is_mix
from sfu.rtc.media_room import MediaRoomSetup
from sfu.rtc.relay import RelayedMediaRoom, RelayEndpoint
from signaling.room.media import MediaFacade
from signaling.room.resume import room_of
from signaling.room.room import Room
from signaling.server.api import ApiError
from signaling.server.cluster import keys
from signaling.server.cluster.config import ClusterConfig
from signaling.server.cluster.edge import EdgeSession
from signaling.server.cluster.media import OriginMedia
from signaling.server.cluster.metrics import ClusterCollector
from signaling.server.cluster.remote import RemoteSession, RemoteSocket
from signaling.server.context import ServerContext
from signaling.server.session import HANDLER_TYPES, Session, WebSocket
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.messages import Join, Resume, parse_data
from signaling.wire.protocol import encode_error, encode_event, parse_request
from signaling.wire.tokens import ALL_ROOMS, verify_admin_token, verify_token

logger = logging.getLogger(__name__)

# Refresh / release a claim only while it is still ours (another node may hold it now).
_REFRESH = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class ClusterNode:
    def __init__(self, server: ServerContext, config: ClusterConfig) -> None:
        self.server = server
        self.config = config
        self.id = config.node_id or default_node_id()
        self.redis: Redis = Redis.from_url(config.redis_url, decode_responses=True)
        self.relay = RelayEndpoint(config.relay_host, config.relay_port)
        self.url = config.signaling_url or ""
        self.edge_rooms: dict[str, RelayedMediaRoom] = {}
        self._edge_sessions: dict[str, EdgeSession] = {}  # by connection id
        self._members: dict[tuple[str, str], EdgeSession] = {}  # (room, identity) → session
        self._remote: dict[tuple[str, str], RemoteSocket] = {}  # (edge node, conn) → socket
        self._owned: dict[str, int] = {}  # rooms this node is origin of → beats seen unused
        self._saved: dict[str, int] = {}  # room → the revision of it last written to Redis
        self._adopting: dict[str, asyncio.Future[None]] = {}  # rooms being restored here
        self._others: list[dict[str, Any]] = []  # the other live nodes, as of the last beat
        self.takeovers = 0  # rooms this node went on with from another node's state
        self.redirects = 0  # joins sent to another node because this one is full
        self._local_sessions = 0
        self.messages: Counter[str] = Counter()  # sent, received, lost
        self._outgoing: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._in_flight = False  # a pipeline of publishes is being sent
        self._refreshing = False  # a peer-table refresh out of turn is under way
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[None]] = set()
        self._cpu = (time.monotonic(), time.process_time(), 0.0)
        self._refresh = self.redis.register_script(_REFRESH)
        self._release = self.redis.register_script(_RELEASE)

    # -- lifecycle -------------------------------------------------------------------
    async def start(self, url: str) -> None:
        """Join the cluster; ``url`` is this node's bound signaling URL (a wildcard host in
        it is registered as the relay's address: other nodes and platforms can reach that)."""
        host = self.config.relay_host
        for wildcard in ("//0.0.0.0:", "//[::]:", "//:::"):
            url = url.replace(wildcard, f"//[{host}]:" if ":" in host else f"//{host}:")
        self.url = self.config.signaling_url or url
        await self.relay.start()
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(keys.inbox(self.id))
        await self._beat()
        self._tasks = [
            asyncio.create_task(self._read_inbox()),
            asyncio.create_task(self._publish()),
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._save_states()),
        ]
        logger.info("cluster node %s (relay %s)", self.id, self.relay.address)

    async def stop(self) -> None:
        """Leave the cluster, after telling the other nodes that our clients are gone.

        Called once the server has closed its own rooms (so their remote sessions say
        goodbye through their edges); this node's edge sessions end here.
        """
        for edge in list(self._edge_sessions.values()):
            edge.close("server_shutdown")
        for remote in list(self._remote.values()):  # clients that never joined a room here
            await remote.close(message=b"server_shutdown")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                while self._edge_sessions or self._remote or self._unsent:
                    await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for media in list(self.edge_rooms.values()):
            await media.close()
        self.edge_rooms.clear()
        with contextlib.suppress(Exception):  # Redis gone: the TTLs clean up after us
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(keys.node(self.id))
            pipe.zrem(keys.NODES, self.id)
            for room in self._owned:
                await self._release(keys=[keys.origin(room)], args=[self.id], client=pipe)
            await pipe.execute()
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self.redis.aclose()
        self.relay.close()

    # -- registry --------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            try:
                await self._beat()
            except Exception:  # Redis unreachable for a beat: try again next time
                logger.exception("cluster heartbeat failed")

    def load(self) -> dict[str, Any]:
        wall, cpu, share = self._cpu
        now_wall, now_cpu = time.monotonic(), time.process_time()
        if now_wall - wall >= self.config.heartbeat_interval / 2:
            share = (now_cpu - cpu) / (now_wall - wall)
            self._cpu = (now_wall, now_cpu, share)
        return {
            "cpu": round(share, 3),
            "participants": self._local_sessions + len(self._edge_sessions),
            "rooms": len(self.server.rooms),
            "edge_rooms": len(self.edge_rooms),
            "relay_streams": self.relay.streams,
            "relay_in": self.relay.stats["packets_in"],
            "relay_out": self.relay.stats["packets_out"],
            "relay_refused": self.relay.refused,
            "draining": self.server.draining,
            "max_participants": self.config.max_participants,
        }

    async def _beat(self) -> None:
        now = time.time()
        udp = self.server.udp
        registration = {
            "id": self.id,
            "url": self.url,
            "media_port": udp.port if udp is not None else 0,
            "relay": self.relay.address,
            "relay_key": self.relay.key.hex(),
            "heartbeat": now,
            "load": json.dumps(self.load()),
        }
        ttl_ms = int(self.config.node_ttl * 1000)
        # Beats each claimed room has gone without a live room here (a join still in
        # flight, or the room closed): the claim is released after three.
        for room, unused in self._owned.items():
            self._owned[room] = 0 if room in self.server.rooms else unused + 1
        released = [r for r, unused in self._owned.items() if unused > 2]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(keys.node(self.id), mapping=registration)
        pipe.pexpire(keys.node(self.id), ttl_ms)
        pipe.zadd(keys.NODES, {self.id: now})
        pipe.zremrangebyscore(keys.NODES, 0, now - self.config.node_ttl)
        origin_ms = int(self.config.origin_ttl * 1000)
        state_ms = int(self.config.state_ttl * 1000)
        for room in self._owned:
            script = self._release if room in released else self._refresh
            args: list[Any] = [self.id] if room in released else [self.id, origin_ms]
            await script(keys=[keys.origin(room)], args=args, client=pipe)
            if room in released:  # closed here: nothing of it is to go on elsewhere
                pipe.delete(keys.state(room))
            else:
                pipe.pexpire(keys.state(room), state_ms)
        await pipe.execute()
        for room in released:
            del self._owned[room]
            self._saved.pop(room, None)
        await self.refresh_peers()

    # -- room state in Redis ---------------------------------------------------------
    async def _save_states(self) -> None:
        while True:
            await asyncio.sleep(self.config.state_interval)
            try:
                await self.save_states()
            except Exception:  # Redis unreachable: the next round writes what changed
                logger.exception("cluster: cannot save room state")

    async def save_states(self) -> None:
        """Copy every room this node decides, if it changed, to Redis (one pipeline)."""
        pipe = self.redis.pipeline(transaction=False)
        written: dict[str, int] = {}
        ttl_ms = int(self.config.state_ttl * 1000)
        for name in self._owned:
            room = self.server.rooms.get(name)
            if room is None or self._saved.get(name) == room.revision:
                continue
            if room.stage.ended:
                pipe.delete(keys.state(name))
            else:
                pipe.set(keys.state(name), json.dumps(room.state()), px=ttl_ms)
            written[name] = room.revision
        if written:
            await pipe.execute()
            self._saved.update(written)

    async def _adopt(self, name: str) -> None:
        """A room just claimed: go on from its state if another node left some (takeover)."""
        raw = await self.redis.get(keys.state(name))
        if raw is None or name in self.server.rooms:
            return
        room = self.server.adopt_room(name, json.loads(raw))
        self._saved[name] = room.revision
        self.takeovers += 1
        logger.info("cluster: took room %s over (%d seats held)", name, len(room.participants))

    async def nodes(self) -> list[dict[str, Any]]:
        """Every live node's registration, oldest id first."""
        since = time.time() - self.config.node_ttl
        ids = await self.redis.zrangebyscore(keys.NODES, since, "+inf")
        pipe = self.redis.pipeline(transaction=False)
        for node_id in ids:
            pipe.hgetall(keys.node(node_id))
        found = []
        for entry in await pipe.execute():
            if entry:
                entry["load"] = json.loads(entry.get("load", "{}"))
                entry["media_port"] = int(entry.get("media_port", 0))
                entry["heartbeat"] = float(entry.get("heartbeat", 0))
                found.append(entry)
        return sorted(found, key=lambda e: str(e["id"]))

    async def refresh_peers(self) -> None:
        """The relay's peer table from the registry; what depended on a dead node ends."""
        peers = {}
        self._others = [entry for entry in await self.nodes() if entry["id"] != self.id]
        for entry in self._others:
            host, _, port = str(entry["relay"]).rpartition(":")
            with contextlib.suppress(ValueError):
                peers[str(entry["id"])] = ((host, int(port)), bytes.fromhex(entry["relay_key"]))
        self.relay.set_peers(peers)
        for (edge, _), remote in list(self._remote.items()):
            if edge not in peers:  # its node died: its clients' seats wait for their resume
                remote.end(None)
        for room, media in list(self.edge_rooms.items()):
            origin = media.plan.origin
            if origin is not None and origin not in peers:
                await self._origin_lost(room, origin)

    async def _origin_lost(self, room: str, origin: str) -> None:
        """The room is decided elsewhere now (its origin died, or drained and moved it):
        its clients here are let go without a goodbye, so that their SDKs resume, and
        reach the room wherever it goes on (``_adopt``)."""
        logger.warning("cluster: origin %s of room %s is gone", origin, room)
        for edge in list(self._edge_sessions.values()):
            if edge.room == room:
                edge.reconnect()
        media = self.edge_rooms.pop(room, None)
        if media is not None:
            await media.close()

    def _refresh_peers_soon(self, node: str) -> None:
        """A node the relay does not know yet (it registered since the last beat)."""
        if not self.relay.knows(node) and not self._refreshing:
            self._refreshing = True

            async def refresh() -> None:
                try:
                    await self.refresh_peers()
                finally:
                    self._refreshing = False

            self._spawn(refresh())

    # -- rooms -----------------------------------------------------------------------
    async def origin_of(self, room: str) -> str:
        """The room's origin node, claimed by this node if it has none (or a dead one)."""
        key = keys.origin(room)
        while True:
            if await self.redis.set(key, self.id, nx=True, px=int(self.config.origin_ttl * 1000)):
                self._owned[room] = 0
                adopting = self._adopting[room] = asyncio.ensure_future(self._adopt(room))
                try:
                    await adopting
                finally:
                    del self._adopting[room]
                return self.id
            origin = await self.redis.get(key)
            if origin == self.id:
                self._owned.setdefault(room, 0)
                if (claiming := self._adopting.get(room)) is not None:  # another client's claim
                    await asyncio.shield(claiming)
                return self.id
            if origin is None:
                continue  # lapsed in between: claim it
            if await self.redis.exists(keys.node(origin)):
                return str(origin)
            # Its node is gone (no heartbeat for node_ttl): the claim goes, if still its.
            logger.info("cluster: room %s's origin %s is gone; claiming it", room, origin)
            await self._release(keys=[key], args=[origin])

    def check_origin(self, room: str) -> None:
        """Refuse to make a room here that this node has not claimed (a split room)."""
        if room not in self._owned:
            raise PodiumError(
                ErrorCode.INVALID_STATE,
                "in a cluster a room is joined by a connection's first request",
            )

    def origin_media(self, setup: MediaRoomSetup) -> MediaFacade:
        """The media of a room this node is the origin of."""
        return OriginMedia(setup, self.relay, self.id, self._placement, self._command)

    def _placement(self, room: str, participant: str) -> tuple[str, str] | None:
        """(edge node, connection) a participant's client is served through, None if here."""
        found = self.server.rooms.get(room)
        member = found.participants.get(participant) if found is not None else None
        outbox = member.outbox if member is not None else None
        if isinstance(outbox, RemoteSession):
            return outbox.edge, outbox.conn
        return None

    def _command(self, node: str, message: dict[str, Any]) -> None:
        self._refresh_peers_soon(node)
        self.send(node, message)

    # -- clients ---------------------------------------------------------------------
    async def serve(self, ws: web.WebSocketResponse) -> None:
        """A client's WebSocket: served here if this node is its room's origin, else relayed."""
        first = await _first_frame(ws)
        if first is None:
            return
        route = self._route(first)
        if route is not None and route[1] is not None and (target := await self._redirect()):
            self.redirects += 1
            refused = PodiumError(ErrorCode.REDIRECT, "this node is full: join there", target)
            refused.request_id = _request_id(first)
            await ws.send_str(encode_error(refused))
            await ws.close(message=b"redirect")
            return
        try:
            origin = self.id if route is None else await self.origin_of(route[0])
        except RedisError as exc:  # no origin can be found: say so, as a server error
            logger.warning("cluster: cannot find room %s's origin: %s", route, exc)
            await ws.send_str(encode_event("disconnected", {"reason": "cluster_unavailable"}))
            await ws.close(message=b"cluster_unavailable")
            return
        if origin == self.id:
            self._local_sessions += 1
            try:
                await Session(ws, self.server).run(first)
            finally:
                self._local_sessions -= 1
            return
        assert route is not None
        room, identity = route
        edge = EdgeSession(
            ws,
            lambda message: self.send(origin, {**message, "from": self.id}),
            self.edge_rooms.get,
            room,
            identity,
            self.server.config.max_message_bytes,
        )
        self._edge_sessions[edge.conn] = edge
        if identity is not None:
            self._members[(room, identity)] = edge
        try:
            await edge.run(first, self.id)
        finally:
            del self._edge_sessions[edge.conn]
            member = (room, edge.identity or "")
            if self._members.get(member) is edge:
                del self._members[member]

    def _route(self, frame: str | bytes) -> tuple[str, str | None] | None:
        """(room, identity) of a valid join, (room, None) of a resume; None for anything the
        local session should refuse."""
        config = self.server.config
        try:
            request = parse_request(frame, HANDLER_TYPES, config.max_message_bytes)
            if request.type == "resume":
                room = room_of(parse_data(Resume, request.data).token)
                return None if room is None else (room, None)
            if request.type != "join":
                return None
            join = parse_data(Join, request.data)
            token = verify_token(join.token, config.api_keys)
            named = join.room
        except PodiumError:
            return None
        if named is not None and named != token.room:
            return None
        return token.room, token.identity

    # -- drain -----------------------------------------------------------------------
    async def drain(self, deadline: float) -> bool:
        """SIGTERM: move everyone connected here to another node, nobody leaving a room.

        Rooms this node is the origin of are handed over first: their state is written,
        the claim released, their edges told, so that the first client to resume anywhere
        claims the room and restores it.  Then every client here is sent on (``draining``
        with the target's URL) and resumes there.  False when no other node takes joins
        (the server then drains as a single process does).
        """
        try:
            await self._beat()  # "draining" in the registry: no node redirects a join here
            target = await self._redirect()
        except (RedisError, OSError) as exc:  # no cluster to hand over to: drain alone
            logger.warning("cluster: cannot drain through Redis (%s)", exc)
            return False
        if target is None:
            return False
        for name in list(self._owned):
            room = self.server.rooms.get(name)
            if room is not None:
                await self._hand_over(name, room, target, deadline)
        for edge in list(self._edge_sessions.values()):
            edge.move(target, deadline)
        return True

    async def _hand_over(self, name: str, room: Room, target: str, deadline: float) -> None:
        self._saved.pop(name, None)
        await self.save_states()
        await self._release(keys=[keys.origin(name)], args=[self.id])
        del self._owned[name]
        media = room.media
        for edge in media.plan.edges if isinstance(media, OriginMedia) else ():
            self.send(edge, {"t": "moved", "room": name, "from": self.id})
        for participant in room.participants.values():
            outbox = participant.outbox  # clients on edges are sent on by their edge ("moved")
            if isinstance(outbox, Session) and not isinstance(outbox, RemoteSession):
                outbox.move(target, deadline)
        self.server.forget_room(room)
        await room.abandon()
        logger.info("cluster: room %s handed over (clients sent to %s)", name, target)

    @property
    def busy(self) -> bool:
        """Clients still connected through this node to rooms decided elsewhere."""
        return bool(self._edge_sessions)

    # -- placement -------------------------------------------------------------------
    def full(self) -> bool:
        """Whether this node takes no more clients (its load limits, or a drain)."""
        config = self.config
        load = self.load()
        return (
            self.server.draining
            or 0 < config.max_participants <= load["participants"]
            or 0 < config.max_cpu < load["cpu"]
        )

    async def _redirect(self) -> str | None:
        """Where a join goes instead when this node is full: the least-loaded other node
        (None: there is none, and this node takes it after all)."""
        if not self.full():
            return None
        with contextlib.suppress(RedisError):
            self._others = [entry for entry in await self.nodes() if entry["id"] != self.id]
        return self.least_loaded()

    def least_loaded(self) -> str | None:
        """The signaling URL of the other live node with the fewest clients that still takes
        joins (None: there is none)."""

        def takes_joins(entry: dict[str, Any]) -> bool:
            load = entry["load"]
            limit = int(load.get("max_participants", 0))
            below = limit <= 0 or int(load.get("participants", 0)) < limit
            return bool(entry.get("url")) and not load.get("draining") and below

        candidates = [entry for entry in self._others if takes_joins(entry)]
        if not candidates:
            return None
        best = min(candidates, key=lambda e: (e["load"].get("participants", 0), e["load"]["cpu"]))
        return str(best["url"])

    def node_urls(self) -> list[str]:
        """Every live node's signaling URL, this one's first: where a client may resume when
        the node it is connected to dies (it skips its own)."""
        others = [e for e in self._others if e.get("url") and not e["load"].get("draining")]
        return [self.url, *(str(e["url"]) for e in others)]

    # -- messages between nodes --------------------------------------------------------
    def send(self, node: str, message: dict[str, Any]) -> None:
        """Queue ``message`` for ``node``'s inbox; all of this node's messages keep their order."""
        self._outgoing.put_nowait((node, message))

    async def _publish(self) -> None:
        while True:
            batch = [await self._outgoing.get()]
            while not self._outgoing.empty():
                batch.append(self._outgoing.get_nowait())
            pipe = self.redis.pipeline(transaction=False)  # one connection: in order
            messages = coalesce(batch)
            for node, message in messages:
                pipe.publish(keys.inbox(node), json.dumps(message))
            self._in_flight = True
            try:
                await pipe.execute()
                self.messages["sent"] += len(messages)
            except Exception:
                self.messages["lost"] += len(messages)
                logger.exception("cluster: %d messages lost", len(messages))
            finally:
                self._in_flight = False

    @property
    def _unsent(self) -> bool:
        return self._in_flight or not self._outgoing.empty()

    async def _read_inbox(self) -> None:
        """Our inbox, for good: a lost Redis connection is re-opened (and re-subscribed)."""
        assert self._pubsub is not None
        while True:
            try:
                async for message in self._pubsub.listen():
                    self.messages["received"] += 1
                    try:
                        await self._dispatch(json.loads(message["data"]))
                    except Exception:  # one bad message must not stop the node's inbox
                        logger.exception("cluster: cannot handle %r", message["data"][:200])
            except (RedisError, OSError) as exc:
                logger.warning("cluster: inbox connection lost (%s); reconnecting", exc)
                await asyncio.sleep(self.config.heartbeat_interval)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "msg":
            for conn in message["conns"]:
                if (edge := self._edge_sessions.get(conn)) is not None:
                    edge.deliver(message["text"])
        elif kind == "close":
            if (edge := self._edge_sessions.get(message["conn"])) is not None:
                edge.close()
        elif kind == "open":
            self._open(message)
        elif kind in ("frame", "gone"):
            socket_ = self._remote.get((message["from"], message["conn"]))
            if socket_ is None:
                return
            if kind == "gone":
                socket_.end(message.get("code"))
            elif "text" in message:
                socket_.feed(message["text"])
            else:
                socket_.feed(bytes.fromhex(message["bytes"]))
        elif kind == "media":
            await self._media_command(message)
        elif kind == "moved":
            await self._origin_lost(message["room"], message["from"])

    def _open(self, message: dict[str, Any]) -> None:
        """A client joined through another node: serve it with a Session of our own."""
        edge, conn = message["from"], message["conn"]
        remote = self._remote[(edge, conn)] = RemoteSocket(lambda m: self.send(edge, m), conn, edge)

        async def serve() -> None:
            room = message["room"]
            try:
                if room not in self.server.rooms:  # its adoption here may still be under way
                    with contextlib.suppress(RedisError):
                        await self.origin_of(room)
                await RemoteSession(remote, self.server).run()
            finally:
                self._remote.pop((edge, conn), None)

        self._spawn(serve())

    async def _media_command(self, message: dict[str, Any]) -> None:
        """The origin's decision about one of our clients' media (``OriginMedia``)."""
        room, pid, op, value = message["room"], message["pid"], message["op"], message["value"]
        media = self.edge_rooms.get(room)
        if op == "join":
            if media is None:
                setup = MediaRoomSetup(
                    room,
                    self.server.config.media,
                    self._edge_event_handler(room),
                    self._edge_peer_lost,
                    self.server.udp,
                )
                media = self.edge_rooms[room] = RelayedMediaRoom(
                    setup, self.relay, origin=message["origin"]
                )
                self._refresh_peers_soon(message["origin"])
            await media.drop_relayed(pid)  # connected here now: never from the relay
            media.join(pid, bool(value))
            edge = self._edge_sessions.get(message["conn"])
            if edge is not None:  # a resume names its participant only now
                edge.identity = pid
                self._members[(room, pid)] = edge
            return
        if media is None:
            return
        if op == "drop":
            await media.drop_relayed(pid)
        elif pid not in media.room.participants:
            return
        elif op == "allow":
            media.set_publish_allowed(pid, bool(value))
        elif op == "mute":
            media.set_muted(pid, bool(value))
        elif op == "leave":
            await media.leave(pid)
            if media.local_participants == 0 and self.edge_rooms.get(room) is media:
                del self.edge_rooms[room]
                await media.close()

    def _edge_event_handler(self, room: str) -> Callable[[RouterEvent], None]:
        """Slot layouts go to this node's clients; speaking and the like come from the origin."""

        def handle(event: RouterEvent) -> None:
            if isinstance(event, SlotsChanged):
                edge = self._members.get((room, event.subscriber_id))
                if edge is not None:
                    layout = [MIX if is_mix(s) else s for s in event.slots]
                    edge.deliver(encode_event("slots", {"slots": layout}))

        return handle

    async def _edge_peer_lost(self, identity: str, state: str) -> None:
        for (_, member), edge in list(self._members.items()):
            if member == identity:
                logger.info("cluster: %s's peer connection %s", identity, state)
                with contextlib.suppress(Exception):
                    await edge.ws.close()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # -- server API ----------------------------------------------------------------------
    def install(self, app: web.Application, registry: CollectorRegistry) -> None:
        """``GET /v1/nodes`` on the server's app; the node's series in its metrics."""
        app.add_routes(
            [
                web.get("/v1/nodes", self._list_nodes, allow_head=False),
                web.get("/v1/rooms/{room}/node", self._room_node, allow_head=False),
            ]
        )
        registry.register(ClusterCollector(self))

    def _grant(self, request: web.Request, room: str) -> None:
        """Refuse unless the request carries an admin token for ``room`` (or all rooms)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, ErrorCode.TOKEN_INVALID, "send Authorization: Bearer <admin token>")
        try:
            grant = verify_admin_token(token.strip(), self.server.config.api_keys)
        except PodiumError as error:
            raise ApiError(401, error.code, error.message) from error
        if grant.room not in (ALL_ROOMS, room):
            scope = "all rooms" if room == ALL_ROOMS else f"room {room!r}"
            raise ApiError(403, ErrorCode.NOT_PERMITTED, f"this admin token is not for {scope}")

    async def _list_nodes(self, request: web.Request) -> web.Response:
        self._grant(request, ALL_ROOMS)
        nodes = [{k: v for k, v in n.items() if k != "relay_key"} for n in await self.nodes()]
        return web.json_response({"nodes": nodes, "this": self.id})

    async def _room_node(self, request: web.Request) -> web.Response:
        """Where a room lives: its origin node (404 while it has none)."""
        room = request.match_info["room"]
        self._grant(request, room)
        origin = await self.redis.get(keys.origin(room))
        url = None
        if origin is not None:
            url = await cast("Awaitable[str | None]", self.redis.hget(keys.node(origin), "url"))
        if url is None:
            raise ApiError(404, ErrorCode.ROOM_NOT_FOUND, f"room {room!r} lives on no node now")
        return web.json_response({"room": room, "node": origin, "url": url})

    def dump(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "relay": self.relay.dump(),
            "origin_of": sorted(self._owned),
            "edge_rooms": {name: media.dump() for name, media in self.edge_rooms.items()},
            "edge_sessions": len(self._edge_sessions),
            "remote_sessions": len(self._remote),
        }


def _request_id(frame: str | bytes) -> int | str | None:
    """The id of a request already known to parse (``_route``), for the reply to name it."""
    found: int | str | None = json.loads(frame).get("id")
    return found


def coalesce(batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """One message per node for a frame broadcast to many of its clients.

    A ``msg`` joins the message just before it for the same node when that one carries
    the same text: what each node receives, and in which order, is unchanged (a room's
    broadcast costs one message per edge instead of one per listener).
    """
    out: list[tuple[str, dict[str, Any]]] = []
    last: dict[str, dict[str, Any]] = {}  # node → its latest message in ``out``
    for node, message in batch:
        if message["t"] == "msg":
            previous = last.get(node)
            if (
                previous is not None
                and previous["t"] == "msg"
                and previous["text"] == message["text"]
            ):
                previous["conns"].append(message["conn"])
                continue
            message = {"t": "msg", "conns": [message["conn"]], "text": message["text"]}
        out.append((node, message))
        last[node] = message
    return out


async def _first_frame(ws: WebSocket) -> str | bytes | None:
    """The client's first text or binary frame; None if it left without one."""
    async for message in ws:
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            data: str | bytes = message.data
            return data
        if message.type == WSMsgType.ERROR:
            return None
    return None
