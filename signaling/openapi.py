"""The OpenAPI 3.1 description of the server API and its webhooks (``GET /openapi.json``).

Written as data next to the code it describes (``signaling.api``, ``signaling.views``,
``signaling.webhooks``). Response schemas forbid properties they do not name,
so the tests, which validate every response and every webhook body against
this document, notice a field added in code but not here, and vice versa.
"""

from __future__ import annotations

from typing import Any

from sfu.mixer import MediaMode
from signaling.roles import Role

VERSION = "1.0.0"
ROLES = [str(r) for r in Role]
MEDIA_MODES = [str(m) for m in MediaMode]
NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "pattern": "^[^/\\u0000-\\u001f\\u007f]+$",
}
TIMESTAMP = {"type": "number", "description": "seconds since the Unix epoch"}
METADATA = {
    "type": "object",
    "description": "any JSON object, at most 16 KiB serialised",
    "maxProperties": 64,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A closed object: every property listed is required unless ``required`` says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        413: "TooLarge",
    }
    return {str(s): {"$ref": f"#/components/responses/{names[s]}"} for s in statuses}


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


ROOM_PARAM = _param("room", "path", {"type": "string", "minLength": 1}, "room name")
ROOM_PARAM["example"] = "town-hall"
IDENTITY_PARAM = _param("identity", "path", {"type": "string", "minLength": 1}, "identity (sub)")
IDENTITY_PARAM["example"] = "ada"
LIMIT_PARAM = _param(
    "limit", "query", {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}, "page size"
)
CURSOR_PARAM = _param(
    "cursor", "query", {"type": "string", "minLength": 1}, "the previous page's next_cursor"
)


VISIT = _obj(
    {
        "joined_at": TIMESTAMP,
        "left_at": {"type": ["number", "null"], "description": "null: still in the room"},
        "roles": {
            "type": "array",
            "items": _obj({"role": {"type": "string", "enum": ROLES}, "since": TIMESTAMP}),
        },
    }
)
ATTENDANCE = {
    "type": "array",
    "items": _obj(
        {
            "identity": {"type": "string"},
            "name": {"type": "string"},
            "visits": {"type": "array", "items": VISIT},
        }
    ),
}


def _schemas() -> dict[str, Any]:
    # What a create may ask for; rooms made by a join carry the server's defaults,
    # which need not be within these bounds (``RoomSettings`` describes both).
    wanted = {
        "max_participants": {"type": "integer", "minimum": 1, "maximum": 100_000},
        "max_speakers": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "description": "hosts, moderators and speakers together",
        },
        "media_mode": {
            "type": "string",
            "enum": MEDIA_MODES,
            "description": "'forward' (SFU: up to K streams per listener), 'mix' (one mixed "
            "stream; speakers hear everyone but themselves) or 'auto' (mix while the "
            "audience or the stage is large)",
        },
        "empty_timeout": {
            "type": "number",
            "minimum": 1,
            "maximum": 604800,
            "default": 300,
            "description": "seconds an empty room lives on, also before its first join",
        },
    }
    settings = _obj(
        {
            "max_participants": {"type": "integer", "minimum": 1},
            "max_speakers": {"type": "integer", "minimum": 1},
            "media_mode": {"type": "string", "enum": MEDIA_MODES},
            "empty_timeout": {"type": "number", "minimum": 0},
        }
    )
    participant = _obj(
        {
            "identity": {"type": "string"},
            "name": {"type": "string"},
            "headline": {"type": "string"},
            "avatar_url": {"type": "string"},
            "profile_url": {"type": "string"},
            "role": {"type": "string", "enum": ROLES},
            "joined_at": TIMESTAMP,
            "muted": {"type": "boolean"},
            "hand_raised": {"type": "boolean"},
            "invited": {"type": "boolean", "description": "invited to the stage, not answered"},
            "metadata": {"type": "object"},
        }
    )
    return {
        "Error": _obj(
            {
                "error": _obj(
                    {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string", "description": "the offending field (400)"},
                    },
                    required=["code", "message"],
                )
            }
        ),
        "RoomSettings": settings,
        "Room": _obj(
            {
                "name": {"type": "string"},
                "sid": {"type": "string", "description": "this incarnation of the name"},
                "created_at": TIMESTAMP,
                "num_participants": {"type": "integer", "minimum": 0},
                "counts": _obj({role: {"type": "integer", "minimum": 0} for role in ROLES}),
                "settings": _ref("RoomSettings"),
                "metadata": {"type": "object"},
            }
        ),
        "RoomList": _obj(
            {
                "rooms": {"type": "array", "items": _ref("Room")},
                "next_cursor": {"type": ["string", "null"]},
            }
        ),
        "CreateRoom": _obj(
            {
                "name": NAME,
                **wanted,
                "metadata": METADATA,
            },
            required=["name"],
        ),
        "Participant": participant,
        "ParticipantList": _obj(
            {
                "participants": {"type": "array", "items": _ref("Participant")},
                "next_cursor": {"type": ["string", "null"]},
                "total": {"type": "integer", "minimum": 0},
            }
        ),
        "UpdateParticipant": _obj(
            {
                "role": {"type": "string", "enum": ROLES},
                "name": {"type": "string", "minLength": 1, "maxLength": 128},
                "metadata": METADATA,
            },
            required=[],
        ),
        "SendMessage": {
            **_obj(
                {
                    "text": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "data": METADATA,
                    "to": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 128,
                        "description": "one participant; the whole room when left out",
                    },
                },
                required=[],
            ),
            "anyOf": [{"required": ["text"]}, {"required": ["data"]}],
        },
        "MessageResult": _obj({"recipients": {"type": "integer", "minimum": 0}}),
        "Attendance": _obj({"room": {"type": "string"}, "records": ATTENDANCE}),
        "RecordingStarted": _obj(
            {
                "recording": {"type": "string", "description": "the file's name"},
                "by": WHO,
                "at": TIMESTAMP,
            }
        ),
        "RecordingFinished": _obj(
            {
                "recording": {"type": "string"},
                "by": WHO,
                "duration": {"type": "number", "minimum": 0, "description": "seconds"},
            }
        ),
        **_webhook_schemas(),
    }


WHO = {"type": "string", "description": "an identity; '' means the platform (server API)"}
WEBHOOKS: dict[str, tuple[str, dict[str, Any]]] = {
    "room_started": (
        "A room was created: by the server API or by its first join.",
        _obj(
            {
                "created_at": TIMESTAMP,
                "settings": _ref("RoomSettings"),
                "metadata": {"type": "object"},
            }
        ),
    ),
    "room_finished": (
        "A room closed: ended by a host or the API, empty for its empty_timeout, "
        "or the server shut down. Carries the full attendance record.",
        _obj(
            {
                "reason": {"type": "string", "enum": ["ended", "empty", "server_shutdown"]},
                "ended_by": {"type": ["string", "null"]},
                "created_at": TIMESTAMP,
                "duration": {"type": "number", "minimum": 0},
                "attendance": ATTENDANCE,
            }
        ),
    ),
    "participant_joined": ("Someone joined.", _obj({"participant": _ref("Participant")})),
    "participant_left": (
        "Someone left, whatever the cause (left, disconnected, removed, banned, "
        "room_ended, media_failed, connection_lost, duplicate_identity, slow_client, "
        "server_shutdown, ...).",
        _obj({"participant": {"type": "string"}, "reason": {"type": "string"}}),
    ),
    "participant_role_changed": (
        "A role changed (invitation accepted, promote, demote, move to audience, API).",
        _obj(
            {
                "participant": {"type": "string"},
                "old": {"type": "string", "enum": ROLES},
                "new": {"type": "string", "enum": ROLES},
                "by": WHO,
            }
        ),
    ),
    "participant_muted": (
        "A speaker was muted or unmuted (by themself, a moderator or the API).",
        _obj({"participant": {"type": "string"}, "by": WHO, "muted": {"type": "boolean"}}),
    ),
    "participant_removed": (
        "A moderator or the API removed (and maybe banned) someone; participant_left follows.",
        _obj(
            {
                "participant": {"type": "string"},
                "by": WHO,
                "banned": {"type": "boolean"},
                "reason": {"type": "string"},
            }
        ),
    ),
    "participant_updated": (
        "The API changed someone's name or metadata.",
        _obj({"participant": _ref("Participant")}),
    ),
    "hand_raised": (
        "A listener raised their hand.",
        _obj({"participant": {"type": "string"}, "at": TIMESTAMP}),
    ),
    "hand_lowered": (
        "A hand went down (by its owner or a moderator).",
        _obj({"participant": {"type": "string"}, "by": WHO}),
    ),
}
"""Every webhook event: (description, schema of its ``data``)."""


def _webhook_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for name, (description, payload) in WEBHOOKS.items():
        schemas[f"Webhook_{name}"] = {
            "description": description,
            **_obj(
                {
                    "id": {"type": "string", "description": "unique; the same on every retry"},
                    "event": {"const": name},
                    "created_at": TIMESTAMP,
                    "room": _obj({"name": {"type": "string"}, "sid": {"type": "string"}}),
                    "seq": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "1, 2, 3, ... per room sid, from room_started",
                    },
                    "data": payload,
                }
            ),
        }
    schemas["WebhookEvent"] = {"oneOf": [_ref(f"Webhook_{name}") for name in WEBHOOKS]}
    return schemas


def _paths() -> dict[str, Any]:
    room_path = [ROOM_PARAM]
    participant_path = [ROOM_PARAM, IDENTITY_PARAM]
    return {
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "the OpenAPI description")},
            }
        },
        "/v1/rooms": {
            "post": {
                "operationId": "createRoom",
                "summary": "Create a room ahead of its first join",
                "description": "Retrying with the same settings answers 200 with the room; "
                "different settings for a live room of that name answer 409 room_exists.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("CreateRoom")}},
                },
                "responses": {
                    "201": _json(_ref("Room"), "created"),
                    "200": _json(_ref("Room"), "already there with these settings"),
                    **_errors(400, 401, 403, 409, 413),
                },
            },
            "get": {
                "operationId": "listRooms",
                "summary": "List live rooms (a room-scoped token sees its own only)",
                "parameters": [LIMIT_PARAM, CURSOR_PARAM],
                "responses": {
                    "200": _json(_ref("RoomList"), "a page of rooms, by name"),
                    **_errors(400, 401, 403),
                },
            },
        },
        "/v1/rooms/{room}": {
            "parameters": room_path,
            "get": {
                "operationId": "getRoom",
                "summary": "Get a room",
                "responses": {"200": _json(_ref("Room"), "the room"), **_errors(401, 403, 404)},
            },
            "delete": {
                "operationId": "endRoom",
                "summary": "End a room, as its host would: everyone is disconnected",
                "responses": {"204": {"description": "ended"}, **_errors(401, 403, 404)},
            },
        },
        "/v1/rooms/{room}/participants": {
            "parameters": room_path,
            "get": {
                "operationId": "listParticipants",
                "summary": "List participants, in join order",
                "parameters": [
                    _param("role", "query", {"type": "string", "enum": ROLES}, "only this role"),
                    LIMIT_PARAM,
                    CURSOR_PARAM,
                ],
                "responses": {
                    "200": _json(_ref("ParticipantList"), "a page of participants"),
                    **_errors(400, 401, 403, 404),
                },
            },
        },
        "/v1/rooms/{room}/participants/{identity}": {
            "parameters": participant_path,
            "get": {
                "operationId": "getParticipant",
                "summary": "Get a participant",
                "responses": {
                    "200": _json(_ref("Participant"), "the participant"),
                    **_errors(401, 403, 404),
                },
            },
            "patch": {
                "operationId": "updateParticipant",
                "summary": "Change a participant's role, name or metadata",
                "description": "Any role to any other. Someone brought onto the stage arrives "
                "self-muted, so only they open their microphone. metadata replaces the old "
                "object (headline, avatar_url and profile_url are shown in attendee lists).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("UpdateParticipant")}},
                },
                "responses": {
                    "200": _json(_ref("Participant"), "the participant, changed"),
                    **_errors(400, 401, 403, 404, 409, 413),
                },
            },
            "delete": {
                "operationId": "removeParticipant",
                "summary": "Remove a participant (and ban their identity for the room's life)",
                "parameters": [
                    _param("ban", "query", {"type": "boolean", "default": False}, "ban too"),
                    _param(
                        "reason",
                        "query",
                        {"type": "string", "minLength": 1, "maxLength": 200},
                        "shown to mods",
                    ),
                ],
                "responses": {"204": {"description": "removed"}, **_errors(400, 401, 403, 404)},
            },
        },
        "/v1/rooms/{room}/participants/{identity}/mute": {
            "parameters": participant_path,
            "post": {
                "operationId": "muteParticipant",
                "summary": "Mute a speaker (only they can unmute); muting the muted is a no-op",
                "responses": {
                    "200": _json(_ref("Participant"), "the participant, muted"),
                    **_errors(401, 403, 404, 409),
                },
            },
        },
        "/v1/rooms/{room}/messages": {
            "parameters": room_path,
            "post": {
                "operationId": "sendMessage",
                "summary": "Send a server_message event to the room or to one participant",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SendMessage")}},
                },
                "responses": {
                    "200": _json(_ref("MessageResult"), "sent"),
                    **_errors(400, 401, 403, 404, 413),
                },
            },
        },
        "/v1/rooms/{room}/attendance": {
            "parameters": room_path,
            "get": {
                "operationId": "getAttendance",
                "summary": "Who came, when, and in which roles (also sent in room_finished)",
                "responses": {
                    "200": _json(_ref("Attendance"), "the attendance record"),
                    **_errors(401, 403, 404),
                },
            },
        },
        "/v1/rooms/{room}/recording": {
            "parameters": room_path,
            "post": {
                "operationId": "startRecording",
                "summary": "Record the room's mix to an Ogg/Opus file on the server",
                "description": "Everyone in the room gets recording_started. 409: "
                "already_recording, or recording_unavailable (no recordings directory).",
                "responses": {
                    "201": _json(_ref("RecordingStarted"), "recording"),
                    **_errors(401, 403, 404, 409),
                },
            },
            "delete": {
                "operationId": "stopRecording",
                "summary": "Finish the recording (everyone gets recording_finished)",
                "responses": {
                    "200": _json(_ref("RecordingFinished"), "the file is complete"),
                    **_errors(401, 403, 404, 409),
                },
            },
        },
    }


def _webhooks() -> dict[str, Any]:
    return {
        name: {
            "post": {
                "summary": description,
                "description": "Signed: Authorization holds an HS256 JWT (iss = API key, "
                "5-minute validity) whose sha256 claim is base64(SHA-256(body)).",
                "requestBody": {
                    "content": {"application/webhook+json": {"schema": _ref(f"Webhook_{name}")}}
                },
                "responses": {"200": {"description": "any 2xx acknowledges; else it is retried"}},
            }
        }
        for name, (description, _) in WEBHOOKS.items()
    }


def spec() -> dict[str, Any]:
    schemas = _schemas()
    error = {"$ref": "#/components/schemas/Error"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Podium server API",
            "version": VERSION,
            "description": "What a platform's backend calls, and the webhooks Podium sends. "
            "See docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"adminToken": []}],
        "paths": _paths(),
        "webhooks": _webhooks(),
        "components": {
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 JWT from an API key/secret with an admin grant "
                    '{"admin": {"room": NAME | "*"}} (podium token --admin).',
                }
            },
            "schemas": schemas,
            "responses": {
                name: _json(error, description)
                for name, description in (
                    ("BadRequest", "malformed request: error.field names the bad field"),
                    ("Unauthorized", "missing, forged or expired token"),
                    ("Forbidden", "no admin grant, or a grant for another room"),
                    ("NotFound", "no such room or participant"),
                    ("Conflict", "refused in the current state (e.g. stage_full, room_exists)"),
                    ("TooLarge", "body over 1 MiB"),
                )
            },
        },
    }
