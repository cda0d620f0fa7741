"""A client of a room whose origin is another node: requests go there, media stays here.

The client talks to this node only.  Its frames are passed to the origin untouched
(the origin's ``Session`` answers them exactly as for a local client), except its SDP
offer: its peer connection is with this node's media room, which the origin has told
about the participant before the join's reply could reach the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType

from sfu.errors import MediaError
from sfu.rtc.relay import RelayedMediaRoom
from signaling.room.media import refusal
from signaling.server.session import HANDLER_TYPES, WebSocket
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.messages import Offer, parse_data
from signaling.wire.protocol import (
    encode_error,
    encode_event,
    encode_response,
    parse_request,
)

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]
MediaLookup = Callable[[str], RelayedMediaRoom | None]


class EdgeSession:
    def __init__(
        self,
        ws: WebSocket,
        send: Send,
        media: MediaLookup,
        room: str,
        identity: str | None,
        max_message_bytes: int,
    ) -> None:
        self.ws = ws
        self.conn = secrets.token_hex(8)
        self.room = room
        self.identity = identity
        """None until the origin names it (a resume: the token alone says the room)."""
        self._send = send  # to the origin
        self._media = media
        self._max_message_bytes = max_message_bytes
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._close_code = 1000
        self.closed_by_origin = False

    async def run(self, first: str | bytes, node_id: str) -> None:
        writer = asyncio.create_task(self._write_loop())
        opened = {"room": self.room, "from": node_id}
        self._send({"t": "open", "conn": self.conn, **opened})
        try:
            await self._handle(first)
            async for message in self.ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._handle(message.data)
                elif message.type == WSMsgType.ERROR:
                    break
                if self.closed_by_origin:
                    break
        finally:
            if not self.closed_by_origin:
                self._send({"t": "gone", "conn": self.conn, "code": self.ws.close_code})
            self._outbox.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(writer, 1.0)
            if not self.ws.closed:
                await self.ws.close()

    # -- from the origin -----------------------------------------------------------
    def deliver(self, text: str) -> None:
        self._outbox.put_nowait(text)

    def close(self, reason: str | None = None) -> None:
        """End the session: with no ``reason`` the origin closed it (its goodbye is queued);
        otherwise this node does, tells the client why, and the origin that it left."""
        if reason is None:
            self.closed_by_origin = True
        else:
            self.deliver(encode_event("disconnected", {"reason": reason}))
        self._outbox.put_nowait(None)

    def reconnect(self) -> None:
        """The room moved (its origin died or drained): close the socket without a goodbye,
        with 1012 (service restart), so that the client resumes, wherever the room is now."""
        self.closed_by_origin = True  # the old origin is told nothing
        self._outbox.put_nowait(None)
        self._close_code = 1012

    def move(self, url: str, deadline: float) -> None:
        """This node is draining: send the client on to ``url``; the origin holds its seat
        (the socket's 1012 is not a leave) until it resumes there."""
        self.deliver(encode_event("draining", {"deadline": deadline, "url": url}))
        self._close_code = 1012
        self._outbox.put_nowait(None)

    async def _write_loop(self) -> None:
        try:
            while (text := await self._outbox.get()) is not None:
                await self.ws.send_str(text)
            await self.ws.close(code=self._close_code)
        except (ConnectionError, RuntimeError):  # the client is gone mid-write
            return

    # -- from the client -------------------------------------------------------------
    async def _handle(self, raw: str | bytes) -> None:
        try:
            request = parse_request(raw, HANDLER_TYPES, self._max_message_bytes)
        except PodiumError:
            request = None  # the origin answers it, as it answers everything but offers
        if request is None or request.type != "offer":
            frame: dict[str, Any] = {"t": "frame", "conn": self.conn}
            if isinstance(raw, str):
                frame["text"] = raw
            else:
                frame["bytes"] = raw.hex()
            self._send(frame)
            return
        try:
            offer = parse_data(Offer, request.data)
            media = self._media(self.room)
            if media is None or self.identity not in media.room.participants:
                raise PodiumError(ErrorCode.NOT_JOINED, "send 'join' first")
            try:
                answer = await media.connect(self.identity, offer.sdp, offer.ice_restart)
            except MediaError as exc:
                raise refusal(exc) from exc
            self.deliver(encode_response(request.id, {"sdp": answer}))
        except PodiumError as error:
            error.request_id = request.id
            self.deliver(encode_error(error))
