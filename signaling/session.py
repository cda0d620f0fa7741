"""One client's WebSocket: request dispatch, error replies, a non-blocking outbox.

Every failure a client can cause ends in an error reply (or, for a frame too
big to buffer, a 1009 close) on *this* session only; nothing it sends can
raise out of here into the server or the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from sfu.rtc.peer import NegotiationError
from signaling.errors import PodiumError
from signaling.participant import Participant
from signaling.protocol import (
    Request,
    encode_error,
    encode_event,
    encode_response,
    field,
    parse_request,
)
from signaling.tokens import verify_token

if TYPE_CHECKING:
    from signaling.room import Room
    from signaling.server import PodiumServer

logger = logging.getLogger(__name__)

Handler = Callable[["Session", Request], Awaitable[Mapping[str, Any]]]
_CLOSE = object()  # outbox sentinel


class Session:
    def __init__(self, ws: web.WebSocketResponse, server: PodiumServer) -> None:
        self.ws = ws
        self.server = server
        self.room: Room | None = None
        self.participant: Participant | None = None
        self.close_reason: str | None = None
        self.leaving = False
        self._outbox: asyncio.Queue[object] = asyncio.Queue(server.config.outbox_limit)
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[bool] | None = None

    # -- Outbox protocol (used by Room) ----------------------------------
    def send(self, text: str) -> None:
        if self.close_reason is not None:
            return
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            logger.warning("dropping slow client %s", self.identity)
            self.close("slow_client")

    def close(self, reason: str) -> None:
        """Tell the client why, then close; idempotent."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        try:
            self._outbox.put_nowait(encode_event("disconnected", {"reason": reason}))
            self._outbox.put_nowait(_CLOSE)
        except asyncio.QueueFull:  # stuck behind a slow client: no goodbye, close at once
            if self._writer is not None:
                self._writer.cancel()
            self._closer = asyncio.create_task(self.ws.close(message=reason.encode()))

    @property
    def identity(self) -> str | None:
        return self.participant.identity if self.participant else None

    # -- lifecycle -------------------------------------------------------
    async def run(self) -> None:
        self._writer = asyncio.create_task(self._write_loop())
        try:
            async for message in self.ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._handle_frame(message.data)
                elif message.type == WSMsgType.ERROR:
                    break
                if self.close_reason is not None:
                    break
        finally:
            await self._cleanup()

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if item is _CLOSE:
                    await self.ws.close(message=(self.close_reason or "").encode())
                    return
                assert isinstance(item, str)
                await self.ws.send_str(item)
        except (ConnectionError, RuntimeError):  # peer gone mid-write
            return

    async def _cleanup(self) -> None:
        if self.room is not None and self.participant is not None:
            room, identity = self.room, self.participant.identity
            # Only remove our own participant: a duplicate join may have replaced it.
            if room.participants.get(identity) is self.participant:
                await room.remove(identity, self.close_reason or "disconnected")
        if self.close_reason is None:
            self.close_reason = "disconnected"
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(_CLOSE)
        if self._writer is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._writer, 1.0)
        if not self.ws.closed:
            await self.ws.close()

    # -- requests --------------------------------------------------------
    async def _handle_frame(self, raw: str | bytes) -> None:
        request: Request | None = None
        try:
            request = parse_request(raw, HANDLER_TYPES, self.server.config.max_message_bytes)
            result = await HANDLERS[request.type](self, request)
            self.send(encode_response(request.id, result))
            if self.leaving:  # reply first, then release everything
                room, participant = self.require_joined()
                await room.remove(participant.identity, "left")
        except PodiumError as error:
            if error.request_id is None and request is not None:
                error.request_id = request.id
            self.server.count_error(error.code)
            self.send(encode_error(error))
        except Exception:
            logger.exception("request failed: %r", request)
            internal = PodiumError("internal_error", "the server failed to handle this request")
            internal.request_id = request.id if request else None
            self.server.count_error(internal.code)
            self.send(encode_error(internal))

    def require_joined(self) -> tuple[Room, Participant]:
        if self.room is None or self.participant is None:
            raise PodiumError("not_joined", "send 'join' first")
        return self.room, self.participant


async def _join(session: Session, request: Request) -> Mapping[str, Any]:
    if session.participant is not None:
        raise PodiumError("already_joined", "this session already joined a room")
    token = verify_token(field(request.data, "token", str), session.server.config.api_keys)
    room_name = field(request.data, "room", str, required=False)
    if room_name is not None and room_name != token.room:
        raise PodiumError("room_mismatch", f"token is for room {token.room!r}, not {room_name!r}")
    room = session.server.room(token.room)
    session.room = room
    session.participant = await room.admit(token, session)
    return {
        "participant": session.participant.info(),
        "room": room.info(),
        "participants": [p.info() for p in room.participants.values()],
        "slots": session.server.config.media.slots,
        "ice_servers": [s.to_dict() for s in session.server.config.ice_servers],
    }


async def _offer(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    sdp = field(request.data, "sdp", str)
    try:
        answer = await room.media.connect(participant.identity, sdp)
    except NegotiationError as exc:
        raise PodiumError(exc.code, exc.message) from exc
    return {"sdp": answer}


async def _leave(session: Session, request: Request) -> Mapping[str, Any]:
    session.require_joined()
    session.leaving = True
    return {}


async def _ping(session: Session, request: Request) -> Mapping[str, Any]:
    return {"time": time.time()}


HANDLERS: dict[str, Handler] = {
    "join": _join,
    "offer": _offer,
    "leave": _leave,
    "ping": _ping,
}
HANDLER_TYPES = frozenset(HANDLERS)
