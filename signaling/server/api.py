"""The server API: what a platform's backend calls over HTTP, under ``/v1``.

Every call carries ``Authorization: Bearer <admin token>`` (``tokens.mint_admin_token``),
granting one room or all (``*``). Checks run in a fixed order, so that an
unauthenticated caller learns nothing: credentials (401), the token's scope
(403), the request's fields (400), the room and participant (404), then the
state (409). Every error is ``{"error": {"code", "message"[, "field"]}}``.

Changes go through the same Stage requests and ``Room.apply`` as a moderator's
WebSocket requests (``Stage.server_*``), so clients, media and webhooks see an
API call exactly as they see the moderator action; the only difference is
``by: ""``, the platform. Bodies and queries are parsed into the models of
``signaling.wire.rest``, where every limit lives; ``signaling.wire.openapi``, served at
``/openapi.json``, is generated from the same models (the tests hold responses to it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from aiohttp import web

from sfu.mixer import MediaMode
from signaling.room.participant import identity_of
from signaling.room.settings import RoomSettings
from signaling.room.stage import Member, StageEvent
from signaling.server.context import ServerContext
from signaling.server.views import attendance_info, participant_view, room_view
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.messages import ServerMessage
from signaling.wire.openapi import spec
from signaling.wire.rest import (
    DEFAULT_EMPTY_TIMEOUT,
    Attendance,
    B,
    CreateRoom,
    ErrorBody,
    ErrorDetail,
    FieldError,
    ListParticipants,
    ListRooms,
    MessageResult,
    ParticipantList,
    Q,
    RemoveParticipant,
    RoomList,
    SendMessage,
    UpdateParticipant,
    parse_body,
    parse_query,
)
from signaling.wire.tokens import AccessToken, AdminGrant, verify_admin_token

if TYPE_CHECKING:
    from signaling.room.room import Room

logger = logging.getLogger(__name__)

ENDING_WAIT = 5.0  # how long a create waits for an ended room of that name to close

# Stage refusals, as HTTP.
_STATUS: dict[str, tuple[int, str]] = {
    ErrorCode.NO_SUCH_PARTICIPANT: (404, ErrorCode.PARTICIPANT_NOT_FOUND),
    ErrorCode.NOT_IN_ROOM: (404, ErrorCode.PARTICIPANT_NOT_FOUND),
    ErrorCode.ROOM_ENDED: (404, ErrorCode.ROOM_NOT_FOUND),
    ErrorCode.INVALID_REQUEST: (400, ErrorCode.INVALID_REQUEST),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(status, code, message, field)
        self.status, self.code, self.message, self.field = status, code, message, field

    def response(self) -> web.Response:
        headers = {"WWW-Authenticate": 'Bearer realm="podium"'} if self.status == 401 else None
        return error_response(self.status, self.code, self.message, self.field, headers)


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    error: ErrorDetail = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    body: ErrorBody = {"error": error}
    return web.json_response(body, status=status, headers=headers)


def _bad(error: FieldError) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_REQUEST, error.message, error.field)


def _is_api(path: str) -> bool:
    return path == "/openapi.json" or path == "/v1" or path.startswith("/v1/")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API paths answer every failure in the documented JSON shape, 404s and 405s included."""
    if not _is_api(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as error:
        return error.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: ErrorCode.NOT_FOUND,
            405: ErrorCode.METHOD_NOT_ALLOWED,
            413: ErrorCode.REQUEST_TOO_LARGE,
        }
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(
            exc.status, code.get(exc.status, ErrorCode.HTTP_ERROR), exc.reason, headers=allow
        )
    except Exception:
        logger.exception("server API: %s %s failed", request.method, request.path)
        return error_response(500, "internal_error", "the server failed to handle this request")


async def _read_body(request: web.Request, model: type[B]) -> B:
    raw = await request.read()  # over client_max_size: 413
    try:
        return parse_body(model, raw)
    except FieldError as error:
        raise _bad(error) from error


def _read_query(request: web.Request, model: type[Q]) -> Q:
    try:
        return parse_query(model, request.query)
    except FieldError as error:
        raise _bad(error) from error


def _encode_cursor(key: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        joined_at, identity = json.loads(raw)
        if isinstance(joined_at, bool) or not isinstance(joined_at, int | float):
            raise ValueError
        if not isinstance(identity, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        malformed = FieldError("cursor", "malformed; pass back a next_cursor unchanged")
        raise _bad(malformed) from exc
    return float(joined_at), identity


def _stage_call(call: Callable[[], StageEvent]) -> StageEvent:
    """A Stage refusal as an ApiError; the Stage has changed nothing."""
    try:
        return call()
    except PodiumError as error:
        status, code = _STATUS.get(error.code, (409, error.code))
        raise ApiError(status, code, error.message) from error


class ServerApi:
    """Routes of the server API over one PodiumServer's room registry."""

    def __init__(self, server: ServerContext) -> None:
        self.server = server
        self._spec = spec()
        # (method, path template) -> its query parameters, straight from the document.
        self._query = {
            (method.upper(), path): {
                p["name"] for p in op.get("parameters", ()) if p["in"] == "query"
            }
            for path, ops in self._spec["paths"].items()
            for method, op in ops.items()
            if method != "parameters"
        }

    def install(self, app: web.Application) -> None:
        app.middlewares.append(json_errors)
        room = "/v1/rooms/{room}"
        participant = room + "/participants/{identity}"
        app.add_routes(
            [
                web.get("/openapi.json", self._openapi, allow_head=False),
                web.post("/v1/rooms", self._create_room),
                web.get("/v1/rooms", self._list_rooms, allow_head=False),
                web.get(room, self._get_room, allow_head=False),
                web.delete(room, self._end_room),
                web.get(room + "/participants", self._list_participants, allow_head=False),
                web.get(participant, self._get_participant, allow_head=False),
                web.patch(participant, self._update_participant),
                web.delete(participant, self._remove_participant),
                web.post(participant + "/mute", self._mute_participant),
                web.post(room + "/messages", self._send_message),
                web.get(room + "/attendance", self._attendance, allow_head=False),
                web.post(room + "/recording", self._start_recording),
                web.delete(room + "/recording", self._stop_recording),
            ]
        )

    # -- checks, in order ---------------------------------------------------
    def _authenticate(self, request: web.Request) -> AdminGrant:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, ErrorCode.TOKEN_INVALID, "send Authorization: Bearer <admin token>")
        try:
            return verify_admin_token(token.strip(), self.server.config.api_keys)
        except PodiumError as error:
            raise ApiError(
                403 if error.code == ErrorCode.NOT_PERMITTED else 401, error.code, error.message
            ) from error

    def _authorize(self, request: web.Request, room: str, grant: AdminGrant | None = None) -> None:
        grant = grant or self._authenticate(request)
        if not grant.allows(room):
            raise ApiError(
                403, ErrorCode.NOT_PERMITTED, f"this token administers room {grant.room!r} only"
            )
        self._check_query(request)

    def _check_query(self, request: web.Request) -> None:
        """Unknown or repeated query parameters are refused: a typo must not be ignored."""
        info = request.match_info.route.resource
        template = info.canonical if info is not None else request.path
        allowed = self._query.get((request.method, template), set())
        for name in request.query:
            if name not in allowed:
                raise _bad(FieldError(name, "unknown query parameter"))
            if len(request.query.getall(name)) > 1:
                raise _bad(FieldError(name, "given more than once"))

    async def _until_released(self, room: Room, timeout: float = ENDING_WAIT) -> None:
        deadline = time.monotonic() + timeout
        while self.server.rooms.get(room.name) is room:
            if time.monotonic() > deadline:
                raise ApiError(
                    409, ErrorCode.ROOM_ENDING, f"room {room.name!r} is ending; retry soon"
                )
            await asyncio.sleep(0.01)

    def _room(self, name: str) -> Room:
        room = self.server.rooms.get(name)
        if room is None or room.stage.ended:
            raise ApiError(404, ErrorCode.ROOM_NOT_FOUND, f"no room {name!r}")
        return room

    def _member(self, room: Room, identity: str) -> Member:
        if identity not in room.stage:
            raise ApiError(
                404, ErrorCode.PARTICIPANT_NOT_FOUND, f"{identity!r} is not in room {room.name!r}"
            )
        return room.stage.member(identity)

    def _target(self, request: web.Request) -> tuple[Room, Member]:
        room = self._room(request.match_info["room"])
        return room, self._member(room, request.match_info["identity"])

    def _participant(self, room: Room, identity: str) -> web.Response:
        member = room.stage.member(identity)
        return web.json_response(participant_view(room, member, room.stage.hand_queue()))

    # -- rooms --------------------------------------------------------------
    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self._spec)

    async def _create_room(self, request: web.Request) -> web.Response:
        grant = self._authenticate(request)
        raw = await request.read()  # over client_max_size: 413
        try:
            body = parse_body(CreateRoom, raw)
        except FieldError as error:
            # A bad field after a good name: out of the token's scope answers 403 first.
            if error.body is not None and error.field in CreateRoom.model_fields.keys() - {"name"}:
                self._authorize(request, error.body["name"], grant)
            raise _bad(error) from error
        name = body.name
        self._authorize(request, name, grant)  # (no query parameters: any is refused)
        defaults = self.server.config.room
        stage = replace(
            defaults.stage,
            max_participants=body.max_participants or defaults.stage.max_participants,
            max_on_stage=body.max_speakers or defaults.stage.max_on_stage,
        )
        settings = RoomSettings(
            stage=stage,
            chat=defaults.chat,
            attendees=defaults.attendees,
            empty_timeout=body.empty_timeout or DEFAULT_EMPTY_TIMEOUT,
            media_mode=str(body.media_mode or MediaMode.FORWARD),
            metadata=body.metadata or {},
        )
        existing = self.server.rooms.get(name)
        if existing is not None and existing.stage.ended:
            # Ended, its people still being disconnected: replacing it now would leave it
            # unclosed (no room_finished, media kept). It takes milliseconds.
            await self._until_released(existing)
            existing = self.server.rooms.get(name)
        if existing is not None and not existing.stage.ended:
            if existing.settings != settings:
                raise ApiError(
                    409, ErrorCode.ROOM_EXISTS, f"room {name!r} exists with other settings", "name"
                )
            return web.json_response(room_view(existing), status=200)  # a retried create
        room = await self.server.create_room(name, settings)
        return web.json_response(room_view(room), status=201)

    async def _list_rooms(self, request: web.Request) -> web.Response:
        grant = self._authenticate(request)
        self._check_query(request)
        query = _read_query(request, ListRooms)
        limit, after = query.limit, query.cursor
        names = sorted(
            name
            for name, room in self.server.rooms.items()
            if grant.allows(name) and not room.stage.ended and (after is None or name > after)
        )
        page = names[:limit]
        listing: RoomList = {
            "rooms": [room_view(self.server.rooms[name]) for name in page],
            "next_cursor": page[-1] if len(names) > limit else None,
        }
        return web.json_response(listing)

    async def _get_room(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        return web.json_response(room_view(self._room(request.match_info["room"])))

    async def _end_room(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        room = self._room(request.match_info["room"])
        now = time.time()
        room.apply(_stage_call(lambda: room.stage.server_end_room(now)), now)
        if not room.participants:  # nobody to wait for: release it now
            await self.server.release_if_empty(room)
        return web.Response(status=204)

    async def _attendance(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        room = self._room(request.match_info["room"])
        records = [attendance_info(r) for r in room.stage.attendance()]
        attendance: Attendance = {"room": room.name, "records": records}
        return web.json_response(attendance)

    async def _start_recording(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        room = self._room(request.match_info["room"])
        try:
            started = room.start_recording(by="")
        except PodiumError as error:
            raise ApiError(409, error.code, error.message) from error
        return web.json_response(started, status=201)

    async def _stop_recording(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        room = self._room(request.match_info["room"])
        try:
            finished = room.stop_recording(by="")
        except PodiumError as error:
            raise ApiError(409, error.code, error.message) from error
        return web.json_response(finished)

    async def _send_message(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        body = await _read_body(request, SendMessage)
        to = body.to
        room = self._room(request.match_info["room"])
        message: ServerMessage = {
            "text": body.text,
            "data": body.data,
            "at": time.time(),
            "private": to is not None,
        }
        if to is None:
            recipients = len(room.participants)
            room.broadcast("server_message", message)
        else:
            if to not in room.participants:
                raise ApiError(
                    404, ErrorCode.PARTICIPANT_NOT_FOUND, f"{to!r} is not in room {room.name!r}"
                )
            recipients = 1
            room.send(to, "server_message", message)
        result: MessageResult = {"recipients": recipients}
        return web.json_response(result)

    # -- participants -------------------------------------------------------
    async def _list_participants(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        query = _read_query(request, ListParticipants)
        role, limit = query.role, query.limit
        after = _decode_cursor(query.cursor) if query.cursor is not None else None
        room = self._room(request.match_info["room"])
        matching = sorted(
            (m for m in room.stage.members() if role is None or m.role is role),
            key=lambda m: (m.joined_at, m.id),
        )
        rest = matching if after is None else [m for m in matching if (m.joined_at, m.id) > after]
        page = rest[:limit]
        hands = set(room.stage.hand_queue())
        listing: ParticipantList = {
            "participants": [participant_view(room, m, hands) for m in page],
            "next_cursor": (
                _encode_cursor((page[-1].joined_at, page[-1].id)) if len(rest) > limit else None
            ),
            "total": len(matching),
        }
        return web.json_response(listing)

    async def _get_participant(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        room, member = self._target(request)
        return self._participant(room, member.id)

    async def _update_participant(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        body = await _read_body(request, UpdateParticipant)
        role, name, metadata = body.role, body.name, body.metadata
        room, member = self._target(request)
        now = time.time()
        if role is not None and role is not member.role:
            room.apply(_stage_call(lambda: room.stage.server_set_role(member.id, role, now)), now)
        if name is not None or metadata is not None:
            current = room.stage.member(member.id)
            participant = room.participants.get(member.id)
            if metadata is None:
                metadata = dict(participant.metadata) if participant is not None else {}
            elif participant is not None:
                participant.metadata = metadata
            token = AccessToken(
                member.id, room.name, current.role, name or current.identity.name, metadata
            )
            identity = identity_of(token)
            room.apply(
                _stage_call(lambda: room.stage.server_set_profile(member.id, identity, now)), now
            )
        return self._participant(room, member.id)

    async def _mute_participant(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        room, member = self._target(request)
        if not member.muted:  # muting the muted changes nothing: a retry is harmless
            now = time.time()
            room.apply(_stage_call(lambda: room.stage.server_mute(member.id, now)), now)
        return self._participant(room, member.id)

    async def _remove_participant(self, request: web.Request) -> web.Response:
        self._authorize(request, request.match_info["room"])
        query = _read_query(request, RemoveParticipant)
        ban, reason = query.ban, query.reason or ""
        room, member = self._target(request)
        now = time.time()
        room.apply(
            _stage_call(lambda: room.stage.server_remove(member.id, now, ban=ban, reason=reason)),
            now,
        )
        return web.Response(status=204)
