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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import WSMsgType

from signaling.room.participant import Participant, person_info
from signaling.room.resume import SeatEnded, room_of
from signaling.room.roles import Action
from signaling.room.room import message_info
from signaling.room.stage import Stage, StageEvent
from signaling.server.context import ServerContext
from signaling.server.views import attendance_info, page_info
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.messages import (
    PROTOCOL_VERSION,
    REQUESTS,
    AttendanceResponse,
    AttendeePage,
    Empty,
    GetAttendees,
    Join,
    JoinResponse,
    MediaModeInfo,
    NoFields,
    Offer,
    OfferResponse,
    PingResponse,
    PinMessage,
    React,
    RecordingFinished,
    RecordingStarted,
    Remove,
    RequiredTarget,
    Resume,
    ResumeResponse,
    SendChat,
    SendChatResponse,
    SetMediaMode,
    StageView,
    Target,
    parse_data,
)
from signaling.wire.protocol import (
    Request,
    encode_error,
    encode_event,
    encode_response,
    parse_request,
)
from signaling.wire.tokens import verify_token

if TYPE_CHECKING:
    from signaling.room.room import Room

logger = logging.getLogger(__name__)

Handler = Callable[["Session", Any], Awaitable[Mapping[str, Any]]]
"""Takes the request's data as its ``messages.REQUESTS`` model."""
_CLOSE = object()  # outbox sentinel
DELIBERATE_CLOSE = (1000, 1001)  # WebSocket close codes: normal closure, going away


class WebSocket(Protocol):
    """What a session needs of its client's connection: aiohttp's WebSocketResponse, or
    (cluster mode) ``signaling.server.cluster.remote.RemoteSocket`` for a client on another node."""

    @property
    def closed(self) -> bool: ...

    @property
    def close_code(self) -> int | None:
        """How the client closed it: 1000/1001 is a leave, anything else a lost link."""
        ...

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = b"", drain: bool = True) -> bool: ...


class Session:
    def __init__(self, ws: WebSocket, server: ServerContext) -> None:
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

    def close(self, reason: str, reply: str | None = None) -> None:
        """Tell the client why (then give ``reply``, a last request's answer), then close;
        idempotent.  Why comes first: a browser drops what arrives once it started closing."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        try:
            self._outbox.put_nowait(encode_event("disconnected", {"reason": reason}))
            if reply is not None:
                self._outbox.put_nowait(reply)
            self._outbox.put_nowait(_CLOSE)
        except asyncio.QueueFull:  # stuck behind a slow client: no goodbye, close at once
            if self._writer is not None:
                self._writer.cancel()
            self._closer = asyncio.create_task(self.ws.close(message=reason.encode()))

    def move(self, url: str, deadline: float) -> None:
        """Send the client on to ``url`` (a draining cluster node; its room goes on there):
        ``draining`` names the node, then the socket closes with no ``disconnected``, so the
        SDK resumes its seat there."""
        if self.close_reason is not None:
            return
        self.send(encode_event("draining", {"deadline": deadline, "url": url}))
        self.close_reason = "moved"
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(_CLOSE)

    @property
    def identity(self) -> str | None:
        return self.participant.id if self.participant else None

    # -- lifecycle -------------------------------------------------------
    async def run(self, first: str | bytes | None = None) -> None:
        """Serve the client until it goes; ``first``: a frame already read off the socket."""
        self._writer = asyncio.create_task(self._write_loop())
        deadline = asyncio.get_running_loop().call_later(
            self.server.config.join_timeout, self._join_deadline
        )
        try:
            if first is not None:
                await self._handle_frame(first)
            async for message in self.ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._handle_frame(message.data)
                elif message.type == WSMsgType.ERROR:
                    break
                if self.close_reason is not None:
                    break
        finally:
            deadline.cancel()
            await self._cleanup()

    def _join_deadline(self) -> None:
        """A socket that never joins holds a connection and a task for nothing."""
        if self.participant is None:
            self.close("join_timeout")

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
            room, participant = self.room, self.participant
            # The connection was lost, not ended by either side (a client that closes its
            # socket itself, 1000 or a browser's 1001, has left): hold the seat for a resume.
            lost = self.close_reason is None and self.ws.close_code not in DELIBERATE_CLOSE
            held = lost and room.suspend(participant.id, self)
            # Only remove our own participant: a duplicate join may have replaced it, a
            # resume may have moved it to another socket.
            current = room.participants.get(participant.id)
            if not held and current is participant and participant.outbox is self:
                await room.remove(participant.id, self.close_reason or "disconnected")
        if self.close_reason is None:
            self.close_reason = "disconnected"
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(_CLOSE)
        if self._writer is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._writer, 1.0)
        if not self.ws.closed:
            await self.ws.close()
        # A held seat's participant keeps this session as its outbox until a resume: the
        # session lets go of it, so that neither keeps the other alive in a cycle.
        self.room = self.participant = None

    # -- requests --------------------------------------------------------
    async def _handle_frame(self, raw: str | bytes) -> None:
        request: Request | None = None
        try:
            request = parse_request(raw, HANDLER_TYPES, self.server.config.max_message_bytes)
            self.server.hooks.request_started(self, request.type)
            precondition, handler = HANDLERS[request.type]
            precondition(self)
            result = await handler(self, parse_data(REQUESTS[request.type], request.data))
            self.server.hooks.request_done(self, request.type)
            self.send(encode_response(request.id, result))
            if self.leaving:  # reply first, then release everything
                room, participant = self.require_joined()
                await room.remove(participant.id, "left")
        except PodiumError as error:
            if error.request_id is None and request is not None:
                error.request_id = request.id
            self.server.count_error(error.code)
            if isinstance(error, SeatEnded):  # the session is over: why, the refusal, close
                self.close(error.reason, reply=encode_error(error))
            else:
                self.send(encode_error(error))
        except Exception:
            logger.exception("request failed: %r", request)
            internal = PodiumError(
                ErrorCode.INTERNAL_ERROR, "the server failed to handle this request"
            )
            internal.request_id = request.id if request else None
            self.server.count_error(internal.code)
            self.send(encode_error(internal))

    def require_joined(self) -> tuple[Room, Participant]:
        if self.room is None or self.participant is None:
            raise PodiumError(ErrorCode.NOT_JOINED, "send 'join' first")
        return self.room, self.participant


def _not_joined(session: Session) -> None:
    if session.participant is not None:
        raise PodiumError(ErrorCode.ALREADY_JOINED, "this session already joined a room")


async def _join(session: Session, request: Join) -> JoinResponse:
    server = session.server
    if server.draining:
        raise PodiumError(ErrorCode.SERVER_DRAINING, "this server is shutting down: join another")
    token = verify_token(request.token, server.config.api_keys)
    if request.room is not None and request.room != token.room:
        raise PodiumError(
            ErrorCode.ROOM_MISMATCH, f"token is for room {token.room!r}, not {request.room!r}"
        )
    room = server.room(token.room)
    try:
        participant = await room.admit(token, session)
    except PodiumError:
        await server.room_idle(room)  # the empty-room timer again: bans must outlive refusals
        raise
    session.room, session.participant = room, participant
    return _welcome(session, room, participant)


async def _resume(session: Session, request: Resume) -> ResumeResponse:
    """Take back a seat held since this client's connection was lost (signaling.room.resume)."""
    token = request.token
    name = room_of(token)
    room = session.server.rooms.get(name) if name is not None else None
    now = time.time()
    if room is not None and room.stage.ended:
        raise SeatEnded("room_ended")
    if room is None:
        session.server.endings.check(token, now)  # the seat ended with the room, or before
        raise PodiumError(ErrorCode.RESUME_FAILED, "the room is gone: join again")
    participant = room.resume(room.seats.claim(token, now), session)
    session.room, session.participant = room, participant
    room.resend_slots(participant.id)
    welcome = _welcome(session, room, participant, claimed=token)
    return {**welcome, "media": room.media_up(participant.id)}


def _welcome(
    session: Session, room: Room, participant: Participant, claimed: str | None = None
) -> JoinResponse:
    """What a joined (or resumed, with ``claimed``) client needs to know of the room."""
    server = session.server
    role = room.role(participant.id)
    page = room.attendees.page(limit=50)
    now = time.time()
    return {
        "protocol": PROTOCOL_VERSION,
        "participant": {
            **person_info(participant.identity, role, now),
            "metadata": dict(participant.metadata),
        },
        "resume_token": room.resume_token(participant.id, claimed),
        "resume_window": room.seats.window,
        "room": room.info(),
        "stage": room.stage_view(participant.id),
        "attendees": page_info(page),
        "chat": {
            "history": [message_info(m) for m in room.chat.history()],
            "pinned": message_info(room.chat.pinned) if room.chat.pinned else None,
        },
        "slots": server.config.media.slots,
        "ice_servers": [s.to_dict(participant.id, now) for s in server.config.ice_servers],
        "reconnect_urls": server.reconnect_urls(),
    }


async def _offer(session: Session, request: Offer) -> OfferResponse:
    room, participant = session.require_joined()
    answer = await room.connect_media(participant.id, request.sdp, request.ice_restart)
    room.media_restored(participant.id)
    return {"sdp": answer}


async def _leave(session: Session, request: NoFields) -> Empty:
    session.leaving = True
    return {}


async def _ping(session: Session, request: NoFields) -> PingResponse:
    return {"time": time.time()}


# -- stage ------------------------------------------------------------------
# Each takes (stage, actor, target, now); ``target`` defaults to the actor.
StageCall = Callable[[Stage, str, str, float], StageEvent]
STAGE_REQUESTS: dict[str, StageCall] = {
    "raise_hand": lambda st, me, _, now: st.raise_hand(me, now),
    "lower_hand": lambda st, me, who, now: st.lower_hand(me, who, now),
    "invite_to_stage": lambda st, me, who, now: st.invite_to_stage(me, who, now),
    "cancel_invite": lambda st, me, who, now: st.cancel_invite(me, who, now),
    "accept_invite": lambda st, me, _, now: st.accept_invite(me, now),
    "decline_invite": lambda st, me, _, now: st.decline_invite(me, now),
    "move_to_audience": lambda st, me, who, now: st.move_to_audience(me, who, now),
    "promote": lambda st, me, who, now: st.promote(me, who, now),
    "demote": lambda st, me, who, now: st.demote(me, who, now),
    "mute": lambda st, me, who, now: st.mute(me, who, now),
    "unmute": lambda st, me, who, now: st.unmute(me, who, now),
    "end_room": lambda st, me, _, now: st.end_room(me, now),
}


def _stage_handler(call: StageCall) -> Callable[[Session, Any], Awaitable[Empty]]:
    async def handle(session: Session, request: Target | RequiredTarget) -> Empty:
        room, participant = session.require_joined()
        target = getattr(request, "participant", None) or participant.id
        now = time.time()
        room.apply(call(room.stage, participant.id, target, now), now)
        return {}

    return handle


async def _remove(session: Session, request: Remove) -> Empty:
    room, participant = session.require_joined()
    reason = (request.reason or "")[:200]
    now = time.time()
    ban = bool(request.ban)
    room.apply(
        room.stage.remove(participant.id, request.participant, now, ban=ban, reason=reason), now
    )
    return {}


async def _get_stage(session: Session, request: NoFields) -> StageView:
    room, participant = session.require_joined()
    return room.stage_view(participant.id)


async def _get_attendees(session: Session, request: GetAttendees) -> AttendeePage:
    room, _ = session.require_joined()
    page = room.attendees.page(
        cursor=request.cursor,
        limit=50 if request.limit is None else request.limit,
        role=request.role,
    )
    return page_info(page)


async def _get_attendance(session: Session, request: NoFields) -> AttendanceResponse:
    room, participant = session.require_joined()
    room.stage.authorize(participant.id, Action.VIEW_ATTENDANCE)
    return {"records": [attendance_info(r) for r in room.stage.attendance()]}


# -- chat -------------------------------------------------------------------
async def _send_chat(session: Session, request: SendChat) -> SendChatResponse:
    room, participant = session.require_joined()
    return {"message": room.send_chat(participant.id, request.text, time.time())}


async def _react(session: Session, request: React) -> Empty:
    room, participant = session.require_joined()
    room.react(participant.id, request.emoji, time.time(), request.message_id)
    return {}


async def _pin_message(session: Session, request: PinMessage) -> Empty:
    room, participant = session.require_joined()
    room.pin(participant.id, request.message_id, time.time())
    return {}


# -- media mode and recording ------------------------------------------------
async def _set_media_mode(session: Session, request: SetMediaMode) -> MediaModeInfo:
    room, participant = session.require_joined()
    room.stage.authorize(participant.id, Action.SET_MEDIA_MODE)
    return room.set_media_mode(request.mode)


async def _start_recording(session: Session, request: NoFields) -> RecordingStarted:
    room, participant = session.require_joined()
    room.stage.authorize(participant.id, Action.RECORD)
    return room.start_recording(participant.id)


async def _stop_recording(session: Session, request: NoFields) -> RecordingFinished:
    room, participant = session.require_joined()
    room.stage.authorize(participant.id, Action.RECORD)
    return room.stop_recording(participant.id)


def _joined(session: Session) -> None:
    session.require_joined()


def _anyone(session: Session) -> None:
    """``ping``: allowed before ``join``."""


# request type -> (what must hold before its fields are read, handler); the model of
# its data is messages.REQUESTS[type].
HANDLERS: dict[str, tuple[Callable[[Session], None], Handler]] = {
    "join": (_not_joined, _join),
    "resume": (_not_joined, _resume),
    "offer": (_joined, _offer),
    "leave": (_joined, _leave),
    "ping": (_anyone, _ping),
    **{name: (_joined, _stage_handler(call)) for name, call in STAGE_REQUESTS.items()},
    "remove": (_joined, _remove),
    "get_stage": (_joined, _get_stage),
    "get_attendees": (_joined, _get_attendees),
    "get_attendance": (_joined, _get_attendance),
    "send_chat": (_joined, _send_chat),
    "react": (_joined, _react),
    "pin_message": (_joined, _pin_message),
    "set_media_mode": (_joined, _set_media_mode),
    "start_recording": (_joined, _start_recording),
    "stop_recording": (_joined, _stop_recording),
}
HANDLER_TYPES = frozenset(HANDLERS)
assert frozenset(REQUESTS) == HANDLER_TYPES, "every request has a model and a handler"
