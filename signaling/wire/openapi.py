"""The OpenAPI 3.1 description of the server API and its webhooks (``GET /openapi.json``).

The routes are described here; every schema and query parameter is generated from
the models of ``signaling.wire.rest`` (the same ones ``signaling.server.api``
validates with), so limits live once. Response schemas forbid properties they do not
name, so the tests, which validate every response and every webhook body against
this document, notice a field added in code but not here, and vice versa.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from signaling.wire import messages, rest

VERSION = "1.0.0"

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


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


def _path_param(name: str, description: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "description": description,
        "example": example,
    }


ROOM_PARAM = _path_param("room", "room name", "town-hall")
IDENTITY_PARAM = _path_param("identity", "identity (sub)", "ada")

# Schema name -> (type, mode): bodies are read ("validation"), responses written.
_SCHEMAS: dict[str, tuple[Any, JsonSchemaMode]] = {
    "Error": (rest.ErrorBody, "serialization"),
    "RoomSettings": (rest.RoomSettings, "serialization"),
    "Room": (rest.Room, "serialization"),
    "RoomList": (rest.RoomList, "serialization"),
    "CreateRoom": (rest.CreateRoom, "validation"),
    "Participant": (rest.Participant, "serialization"),
    "ParticipantList": (rest.ParticipantList, "serialization"),
    "UpdateParticipant": (rest.UpdateParticipant, "validation"),
    "SendMessage": (rest.SendMessage, "validation"),
    "MessageResult": (rest.MessageResult, "serialization"),
    "Attendance": (rest.Attendance, "serialization"),
    "RecordingStarted": (messages.RecordingStarted, "serialization"),
    "RecordingFinished": (messages.RecordingFinished, "serialization"),
    "WebhookEnvelope": (rest.WebhookEnvelope, "serialization"),
    **{f"data_{name}": (kind, "serialization") for name, (_, kind) in rest.WEBHOOKS.items()},
}


def _tidy(schema: Any) -> Any:
    """Drop pydantic's generated titles and the ``default: null`` of optional fields (a
    body refuses null: those fields are simply optional)."""
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _tidy(sub) for name, sub in value.items()}
        elif (key == "title" and isinstance(value, str)) or (key == "default" and value is None):
            continue
        else:
            out[key] = _tidy(value)
    return out


def _schemas() -> dict[str, Any]:
    adapters = [(name, mode, TypeAdapter(kind)) for name, (kind, mode) in _SCHEMAS.items()]
    top, defs = TypeAdapter.json_schemas(adapters, ref_template=_REF)
    schemas: dict[str, Any] = _tidy(defs.get("$defs", {}))
    for (name, _), schema in top.items():  # named as the document has always named them
        ref = schema.get("$ref", "").rsplit("/", 1)[-1]
        if ref != name:
            schemas[name] = schemas[ref] if ref else _tidy(schema)
    envelope = schemas.pop("WebhookEnvelope")
    for name, (description, _) in rest.WEBHOOKS.items():
        properties = {
            **envelope["properties"],
            "event": {"const": name},
            "data": schemas.pop(f"data_{name}"),
        }
        schemas[f"Webhook_{name}"] = {
            **envelope,
            "description": description,
            "properties": properties,
        }
    schemas["WebhookEvent"] = {"oneOf": [_ref(f"Webhook_{name}") for name in rest.WEBHOOKS]}
    return schemas


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as OpenAPI parameters."""
    schema = _tidy(TypeAdapter(model).json_schema(ref_template=_REF))
    parameters = []
    for name, prop in schema["properties"].items():
        description = prop.pop("description", name)
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": prop,
                "description": description,
            }
        )
    return parameters


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
                "parameters": _query(rest.ListRooms),
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
                "parameters": _query(rest.ListParticipants),
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
                "parameters": _query(rest.RemoveParticipant),
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
        for name, (description, _) in rest.WEBHOOKS.items()
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
