"""Typed server API bodies: request bodies, query parameters, responses, webhook payloads.

The one place the API's limits live: ``signaling.server.api`` validates with these
models and ``signaling.wire.openapi`` generates the document's schemas and query
parameters from them. Sans I/O: ``parse_body``/``parse_query`` take bytes and
strings and raise ``FieldError`` naming the offending field.

Request bodies are strict (``true`` is no integer, ``"5"`` no number; ``5.0`` is the
integer 5, as JSON Schema has it), closed (an unknown field is refused: a typo must
not be ignored) and refuse ``null`` (leave a field out instead).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NoReturn, NotRequired, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import ErrorDetails

from sfu.mixer import MediaMode
from signaling.room.roles import Role
from signaling.wire.messages import (
    ActedOn,
    AttendanceRecord,
    Closed,
    Counts,
    HandRaisedData,
    MutedData,
    ParticipantRemoved,
    Person,
    RoleChangedData,
    Timestamp,
)
from signaling.wire.tokens import MAX_IDENTITY_LENGTH

MAX_NAME_LENGTH = 128
NAME_PATTERN = r"^[^/\u0000-\u001f\u007f]+$"
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_KEYS = 64
MAX_TEXT_LENGTH = 2000
MAX_REASON_LENGTH = 200
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50
DEFAULT_EMPTY_TIMEOUT = 300.0


class FieldError(ValueError):
    """A refused request: ``field`` names what is wrong ("body" for the body as a whole)."""

    def __init__(self, field: str, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = f"{field}: {message}"
        self.body = body
        """The decoded body, when it was a JSON object."""


def _refuse(field: str, message: str, body: Mapping[str, Any] | None = None) -> NoReturn:
    raise FieldError(field, message, body)


def _whole(value: Any) -> Any:
    """5.0 is the integer 5 (JSON Schema's integer); 5.5 stays a float and is refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _small_json(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
    return value


def _true_or_false(value: Any) -> Any:
    """A query flag: exactly ``true`` or ``false``."""
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("must be true or false")


Name = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN),
]
Metadata = Annotated[
    dict[str, Any],
    Field(
        max_length=MAX_METADATA_KEYS,
        description=f"any JSON object, at most {MAX_METADATA_BYTES // 1024} KiB serialised",
    ),
    AfterValidator(_small_json),
]


# -- request bodies and queries -------------------------------------------------
class Body(BaseModel):
    """A JSON request body."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class CreateRoom(Body):
    """What a create may ask for; rooms made by a join carry the server's defaults,
    which need not be within these bounds (``RoomSettings`` describes both)."""

    name: Name
    max_participants: (
        Annotated[int, Field(ge=1, le=100_000), BeforeValidator(_whole)] | SkipJsonSchema[None]
    ) = None
    max_speakers: (
        Annotated[
            int,
            Field(ge=1, le=100, description="hosts, moderators and speakers together"),
            BeforeValidator(_whole),
        ]
        | SkipJsonSchema[None]
    ) = None
    media_mode: (
        Annotated[
            MediaMode,
            Field(
                strict=False,
                description="'forward' (SFU: up to K streams per listener), 'mix' (one mixed "
                "stream; speakers hear everyone but themselves) or 'auto' (mix while the "
                "audience or the stage is large)",
            ),
        ]
        | SkipJsonSchema[None]
    ) = None
    empty_timeout: (
        Annotated[
            float,
            Field(
                ge=1,
                le=7 * 24 * 3600,
                json_schema_extra={"default": DEFAULT_EMPTY_TIMEOUT},
                description="seconds an empty room lives on, also before its first join",
            ),
        ]
        | SkipJsonSchema[None]
    ) = None
    metadata: Metadata | SkipJsonSchema[None] = None


class UpdateParticipant(Body):
    role: Annotated[Role, Field(strict=False)] | SkipJsonSchema[None] = None
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)] | SkipJsonSchema[None] = (
        None
    )
    metadata: Metadata | SkipJsonSchema[None] = None


class SendMessage(Body):
    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["text"]}, {"required": ["data"]}]}
    )

    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_LENGTH)] | SkipJsonSchema[None] = (
        None
    )
    data: Metadata | SkipJsonSchema[None] = None
    to: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_IDENTITY_LENGTH,
                description="one participant; the whole room when left out",
            ),
        ]
        | SkipJsonSchema[None]
    ) = None

    @model_validator(mode="after")
    def _something(self) -> SendMessage:
        if self.text is None and self.data is None:
            raise ValueError("give text, data or both")
        return self


class Query(BaseModel):
    """Query parameters: strings, converted (``limit=5`` is 5); described one by one."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Limit = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, description="page size", strict=False)]
Cursor = Annotated[str, Field(min_length=1, description="the previous page's next_cursor")]


class ListRooms(Query):
    limit: Limit = DEFAULT_PAGE_SIZE
    cursor: Cursor | SkipJsonSchema[None] = None


class ListParticipants(Query):
    role: Annotated[Role, Field(description="only this role")] | SkipJsonSchema[None] = None
    limit: Limit = DEFAULT_PAGE_SIZE
    cursor: Cursor | SkipJsonSchema[None] = None


class RemoveParticipant(Query):
    ban: Annotated[bool, BeforeValidator(_true_or_false), Field(description="ban too")] = False
    reason: (
        Annotated[
            str, Field(min_length=1, max_length=MAX_REASON_LENGTH, description="shown to mods")
        ]
        | SkipJsonSchema[None]
    ) = None


B = TypeVar("B", bound=Body)
Q = TypeVar("Q", bound=Query)


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_body(model: type[B], raw: bytes) -> B:
    """``raw`` as ``model``; the first problem in field order as a FieldError."""
    if not raw.strip():
        _refuse("body", "is required: a JSON object")
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        _refuse("body", f"not valid JSON ({exc})")
    if not isinstance(data, dict):
        _refuse("body", "must be a JSON object")
    unknown = sorted(set(data) - set(model.model_fields))
    if unknown:
        _refuse(unknown[0], "unknown field", data)
    for name in model.model_fields:
        if name in data and data[name] is None:
            problem: tuple[str, str] | None = (name, "must not be null (leave it out instead)")
            break
    else:
        problem = None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        first = _first(model, exc.errors(include_url=False))
        if problem is None or _order(model, first[0]) < _order(model, problem[0]):
            problem = first
    if problem is not None:
        _refuse(*problem, data)
    return parsed


def parse_query(model: type[Q], query: Mapping[str, str]) -> Q:
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        _refuse(*_first(model, exc.errors(include_url=False)))


def _order(model: type[BaseModel], field: str) -> int:
    names = list(model.model_fields)
    return names.index(field) if field in names else len(names)


def _first(model: type[BaseModel], errors: list[ErrorDetails]) -> tuple[str, str]:
    """The earliest field's error, worded for people (the field is named by FieldError)."""
    # An optional field's value is tried against None too: that refusal says nothing.
    errors = [e for e in errors if e["type"] != "none_required"]
    error = min(errors, key=lambda e: _order(model, str(e["loc"][0]) if e["loc"] else ""))
    if not error["loc"]:  # a model validator: SendMessage's text-or-data
        return "text", str(error.get("ctx", {}).get("error", error["msg"]))
    field = str(error["loc"][0])
    return field, _wording(error, _schema(model)["properties"][field])


@functools.cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _wording(error: ErrorDetails, schema: Mapping[str, Any]) -> str:
    """As the document states the limit: the field's own schema has its bounds."""
    ctx = error.get("ctx", {})
    match error["type"]:
        case "missing":
            return "is required"
        case "string_type":
            return "must be a string"
        case "string_too_short" | "string_too_long" if "maxLength" in schema:
            return f"must be {schema['minLength']} to {schema['maxLength']} characters"
        case "string_too_short":
            return f"must be at least {schema['minLength']} characters"
        case "string_pattern_mismatch":  # the one pattern: NAME_PATTERN
            return "must not contain '/' or control characters"
        case "int_type" | "int_from_float" | "int_parsing":
            return "must be an integer"
        case "float_type" | "float_parsing":
            return "must be a number"
        case "greater_than_equal" | "less_than_equal":
            return f"must be between {schema['minimum']:g} and {schema['maximum']:g}"
        case "enum" | "literal_error":
            return f"must be one of {ctx['expected']}"
        case "dict_type":
            return "must be a JSON object"
        case "too_long":
            return f"must have at most {ctx['max_length']} properties"
        case "value_error":
            return str(ctx["error"])
    return str(error["msg"]).lower()


# -- responses ------------------------------------------------------------------
NonNegative = Annotated[int, Field(ge=0)]


class RoomSettings(Closed):
    max_participants: Annotated[int, Field(ge=1)]
    max_speakers: Annotated[int, Field(ge=1)]
    media_mode: MediaMode
    empty_timeout: Annotated[float, Field(ge=0)]


class Room(Closed):
    name: str
    sid: Annotated[str, Field(description="this incarnation of the name")]
    created_at: Timestamp
    num_participants: NonNegative
    counts: Counts
    settings: RoomSettings
    metadata: dict[str, Any]


class RoomList(Closed):
    rooms: list[Room]
    next_cursor: str | None


class Participant(Person):
    muted: bool
    hand_raised: bool
    invited: Annotated[bool, Field(description="invited to the stage, not answered")]
    metadata: dict[str, Any]


class ParticipantList(Closed):
    participants: list[Participant]
    next_cursor: str | None
    total: NonNegative


class MessageResult(Closed):
    recipients: NonNegative


class Attendance(Closed):
    room: str
    records: list[AttendanceRecord]


class ErrorDetail(Closed):
    code: str
    message: str
    field: NotRequired[Annotated[str, Field(description="the offending field (400)")]]


class ErrorBody(Closed):
    error: ErrorDetail


# -- webhook payloads -----------------------------------------------------------
class RoomStarted(Closed):
    created_at: Timestamp
    settings: RoomSettings
    metadata: dict[str, Any]


class RoomFinished(Closed):
    reason: Literal["ended", "empty", "server_shutdown"]
    ended_by: str | None
    created_at: Timestamp
    duration: Annotated[float, Field(ge=0)]
    attendance: list[AttendanceRecord]


class ParticipantInfo(Closed):
    participant: Participant


class ParticipantLeft(Closed):
    participant: str
    reason: str


class RoomRef(Closed):
    name: str
    sid: str


class WebhookEnvelope(Closed):
    """Every webhook's body; ``event`` and ``data`` are narrowed per event."""

    id: Annotated[str, Field(description="unique; the same on every retry")]
    event: str
    created_at: Timestamp
    room: RoomRef
    seq: Annotated[int, Field(ge=1, description="1, 2, 3, ... per room sid, from room_started")]
    data: dict[str, Any]


WEBHOOKS: dict[str, tuple[str, Any]] = {
    "room_started": ("A room was created: by the server API or by its first join.", RoomStarted),
    "room_finished": (
        "A room closed: ended by a host or the API, empty for its empty_timeout, "
        "or the server shut down. Carries the full attendance record.",
        RoomFinished,
    ),
    "participant_joined": ("Someone joined.", ParticipantInfo),
    "participant_left": (
        "Someone left, whatever the cause (left, disconnected, removed, banned, "
        "room_ended, media_failed, connection_lost, duplicate_identity, slow_client, "
        "server_shutdown, ...).",
        ParticipantLeft,
    ),
    "participant_role_changed": (
        "A role changed (invitation accepted, promote, demote, move to audience, API).",
        RoleChangedData,
    ),
    "participant_muted": (
        "A speaker was muted or unmuted (by themself, a moderator or the API).",
        MutedData,
    ),
    "participant_removed": (
        "A moderator or the API removed (and maybe banned) someone; participant_left follows.",
        ParticipantRemoved,
    ),
    "participant_updated": ("The API changed someone's name or metadata.", ParticipantInfo),
    "hand_raised": ("A listener raised their hand.", HandRaisedData),
    "hand_lowered": ("A hand went down (by its owner or a moderator).", ActedOn),
}
"""Every webhook event: (description, type of its ``data``)."""
