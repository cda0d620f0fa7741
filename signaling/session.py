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
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from sfu.mixer import MediaMode
from sfu.rtc.peer import NegotiationError
from signaling.attendees import AttendeePage
from signaling.errors import PodiumError
from signaling.participant import Participant, attendee_info, person_info
from signaling.protocol import (
    Request,
    encode_error,
    encode_event,
    encode_response,
    field,
    parse_request,
)
from signaling.resume import RESUME_FAILED, room_of
from signaling.roles import Action, Role
from signaling.room import message_info
from signaling.stage import AttendanceRecord, Stage, StageEvent
from signaling.tokens import verify_token

if TYPE_CHECKING:
    from signaling.room import Room
    from signaling.server import PodiumServer

logger = logging.getLogger(__name__)

Handler = Callable[["Session", Request], Awaitable[Mapping[str, Any]]]
_CLOSE = object()  # outbox sentinel
DELIBERATE_CLOSE = (1000, 1001)  # WebSocket close codes: normal closure, going away


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
        return self.participant.id if self.participant else None

    # -- lifecycle -------------------------------------------------------
    async def run(self) -> None:
        self._writer = asyncio.create_task(self._write_loop())
        deadline = asyncio.get_running_loop().call_later(
            self.server.config.join_timeout, self._join_deadline
        )
        try:
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

    # -- requests --------------------------------------------------------
    async def _handle_frame(self, raw: str | bytes) -> None:
        request: Request | None = None
        try:
            request = parse_request(raw, HANDLER_TYPES, self.server.config.max_message_bytes)
            self.server.metrics.request_started(self, request.type)
            result = await HANDLERS[request.type](self, request)
            self.server.metrics.request_done(self, request.type)
            self.send(encode_response(request.id, result))
            if self.leaving:  # reply first, then release everything
                room, participant = self.require_joined()
                await room.remove(participant.id, "left")
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
    server = session.server
    if server.draining:
        raise PodiumError("server_draining", "this server is shutting down: join another")
    token = verify_token(field(request.data, "token", str), server.config.api_keys)
    room_name = field(request.data, "room", str, required=False)
    if room_name is not None and room_name != token.room:
        raise PodiumError("room_mismatch", f"token is for room {token.room!r}, not {room_name!r}")
    room = server.room(token.room)
    try:
        participant = await room.admit(token, session)
    except PodiumError:
        await server.room_idle(room)  # the empty-room timer again: bans must outlive refusals
        raise
    session.room, session.participant = room, participant
    return _welcome(session, room, participant)


async def _resume(session: Session, request: Request) -> Mapping[str, Any]:
    """Take back a seat held since this client's connection was lost (signaling.resume)."""
    if session.participant is not None:
        raise PodiumError("already_joined", "this session already joined a room")
    token = field(request.data, "token", str)
    name = room_of(token)
    room = session.server.rooms.get(name) if name is not None else None
    if room is None or room.stage.ended:
        raise PodiumError(RESUME_FAILED, "the room is gone: join again")
    participant = room.resume(room.seats.claim(token, time.time()), session)
    session.room, session.participant = room, participant
    room.resend_slots(participant.id)
    return {**_welcome(session, room, participant), "media": room.media_up(participant.id)}


def _welcome(session: Session, room: Room, participant: Participant) -> dict[str, Any]:
    """What a joined (or resumed) client needs to know of the room."""
    server = session.server
    role = room.role(participant.id)
    page = room.attendees.page(limit=50)
    return {
        "participant": {
            **person_info(participant.identity, role, time.time()),
            "metadata": dict(participant.metadata),
        },
        "resume_token": room.seats.issue(participant.id),
        "resume_window": room.seats.window,
        "room": room.info(),
        "stage": room.stage_view(participant.id),
        "attendees": page_info(page),
        "chat": {
            "history": [message_info(m) for m in room.chat.history()],
            "pinned": message_info(room.chat.pinned) if room.chat.pinned else None,
        },
        "slots": server.config.media.slots,
        "ice_servers": [s.to_dict() for s in server.config.ice_servers],
    }


async def _offer(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    sdp = field(request.data, "sdp", str)
    try:
        answer = await room.media.connect(participant.id, sdp)
    except NegotiationError as exc:
        raise PodiumError(exc.code, exc.message) from exc
    room.media_restored(participant.id)
    return {"sdp": answer}


async def _leave(session: Session, request: Request) -> Mapping[str, Any]:
    session.require_joined()
    session.leaving = True
    return {}


async def _ping(session: Session, request: Request) -> Mapping[str, Any]:
    return {"time": time.time()}


# -- stage ------------------------------------------------------------------
# Each takes (stage, actor, target, now); ``target`` defaults to the actor.
StageCall = Callable[[Stage, str, str, float], StageEvent]
STAGE_REQUESTS: dict[str, tuple[StageCall, bool]] = {
    # name: (call, needs an explicit "participant")
    "raise_hand": (lambda st, me, _, now: st.raise_hand(me, now), False),
    "lower_hand": (lambda st, me, who, now: st.lower_hand(me, who, now), False),
    "invite_to_stage": (lambda st, me, who, now: st.invite_to_stage(me, who, now), True),
    "cancel_invite": (lambda st, me, who, now: st.cancel_invite(me, who, now), True),
    "accept_invite": (lambda st, me, _, now: st.accept_invite(me, now), False),
    "decline_invite": (lambda st, me, _, now: st.decline_invite(me, now), False),
    "move_to_audience": (lambda st, me, who, now: st.move_to_audience(me, who, now), False),
    "promote": (lambda st, me, who, now: st.promote(me, who, now), True),
    "demote": (lambda st, me, who, now: st.demote(me, who, now), True),
    "mute": (lambda st, me, who, now: st.mute(me, who, now), False),
    "unmute": (lambda st, me, who, now: st.unmute(me, who, now), False),
    "end_room": (lambda st, me, _, now: st.end_room(me, now), False),
}


def _stage_handler(call: StageCall, needs_target: bool) -> Handler:
    async def handle(session: Session, request: Request) -> Mapping[str, Any]:
        room, participant = session.require_joined()
        target = field(request.data, "participant", str, required=needs_target) or participant.id
        now = time.time()
        room.apply(call(room.stage, participant.id, target, now), now)
        return {}

    return handle


async def _remove(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    target = field(request.data, "participant", str)
    ban = field(request.data, "ban", bool, required=False) or False
    reason = field(request.data, "reason", str, required=False) or ""
    now = time.time()
    room.apply(room.stage.remove(participant.id, target, now, ban=ban, reason=reason[:200]), now)
    return {}


async def _get_stage(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    return room.stage_view(participant.id)


async def _get_attendees(session: Session, request: Request) -> Mapping[str, Any]:
    room, _ = session.require_joined()
    role = field(request.data, "role", str, required=False)
    try:
        role_filter = Role(role) if role is not None else None
    except ValueError as exc:
        raise PodiumError("invalid_request", f"unknown role {role!r}") from exc
    limit = field(request.data, "limit", int, required=False)
    page = room.attendees.page(
        cursor=field(request.data, "cursor", str, required=False),
        limit=50 if limit is None else limit,
        role=role_filter,
    )
    return page_info(page)


async def _get_attendance(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    room.stage.authorize(participant.id, Action.VIEW_ATTENDANCE)
    return {"records": [attendance_info(r) for r in room.stage.attendance()]}


# -- chat -------------------------------------------------------------------
async def _send_chat(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    text = field(request.data, "text", str)
    message = room.chat.send(participant.id, room.role(participant.id), text, time.time())
    room.broadcast("chat", message_info(message))
    return {"message": message_info(message)}


async def _react(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    emoji = field(request.data, "emoji", str)
    message_id = field(request.data, "message_id", int, required=False)
    reaction = room.chat.react(
        participant.id, room.role(participant.id), emoji, time.time(), message_id
    )
    room.broadcast("reaction", asdict(reaction))
    return {}


async def _pin_message(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    message_id = field(request.data, "message_id", int, required=False)
    role, now = room.role(participant.id), time.time()
    if message_id is None:
        change = room.chat.unpin(participant.id, role, now)
    else:
        change = room.chat.pin(participant.id, role, message_id, now)
    pinned = message_info(change.message) if change.message else None
    room.broadcast("pinned", {"message": pinned, "by": change.by})
    return {}


# -- media mode and recording ------------------------------------------------
async def _set_media_mode(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    name = field(request.data, "mode", str)
    if name not in tuple(MediaMode):
        raise PodiumError("invalid_request", f"mode must be one of {', '.join(MediaMode)}")
    room.stage.authorize(participant.id, Action.SET_MEDIA_MODE)
    return room.set_media_mode(MediaMode(name))


async def _start_recording(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    room.stage.authorize(participant.id, Action.RECORD)
    return room.start_recording(participant.id)


async def _stop_recording(session: Session, request: Request) -> Mapping[str, Any]:
    room, participant = session.require_joined()
    room.stage.authorize(participant.id, Action.RECORD)
    return room.stop_recording(participant.id)


HANDLERS: dict[str, Handler] = {
    "join": _join,
    "resume": _resume,
    "offer": _offer,
    "leave": _leave,
    "ping": _ping,
    **{name: _stage_handler(call, needs) for name, (call, needs) in STAGE_REQUESTS.items()},
    "remove": _remove,
    "get_stage": _get_stage,
    "get_attendees": _get_attendees,
    "get_attendance": _get_attendance,
    "send_chat": _send_chat,
    "react": _react,
    "pin_message": _pin_message,
    "set_media_mode": _set_media_mode,
    "start_recording": _start_recording,
    "stop_recording": _stop_recording,
}
HANDLER_TYPES = frozenset(HANDLERS)


def page_info(page: AttendeePage) -> dict[str, Any]:
    return {
        "items": [attendee_info(a) for a in page.items],
        "next_cursor": page.next_cursor,
        "total": page.total,
        "version": page.version,
    }


def attendance_info(record: AttendanceRecord) -> dict[str, Any]:
    return {
        "identity": record.identity.user_id,
        "name": record.identity.name,
        "visits": [
            {
                "joined_at": v.joined_at,
                "left_at": v.left_at,
                "roles": [{"role": str(role), "since": since} for role, since in v.roles],
            }
            for v in record.visits
        ],
    }
