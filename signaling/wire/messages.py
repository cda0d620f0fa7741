"""Typed WebSocket messages: every request, response and event of docs/protocol.md.

Requests are pydantic models, validated from the envelope's ``data`` object
(``parse_data``): strict types (``true`` is not an integer, ``"5"`` not a number),
unknown fields ignored (a newer client's additions reach an older server harmlessly),
``null`` the same as an absent optional field, and a refusal is ``invalid_request``
naming the field. Responses and events are TypedDicts: checked by mypy where they are
built, free at run time (a ``slots`` event goes to every listener), and
described as JSON Schema by the same pydantic (``protocol_schema``).

The envelope itself (``id``, ``type``, ``data``, size, JSON) is parsed by
``signaling.wire.protocol.parse_request``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any, NotRequired, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from sfu.mixer import MediaMode
from signaling.room.roles import Role
from signaling.room.stage import (
    HandLowered,
    HandRaised,
    InviteCancelled,
    Invited,
    InviteDeclined,
    Muted,
    Removed,
    RoleChanged,
    RoomEnded,
    StageEvent,
)
from signaling.wire.errors import ErrorCode, PodiumError

_NONE = type(None)
PROTOCOL_VERSION = 1
"""Sent in every join response as ``protocol``. Raised only for a change an existing
client would misread; added requests, fields and events keep it."""


# -- requests ----------------------------------------------------------------
class WireRequest(BaseModel):
    """The ``data`` of one request type."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Join(WireRequest):
    token: str
    room: str | None = None


class Offer(WireRequest):
    sdp: str
    ice_restart: bool = False
    """An ICE restart of the current peer connection (new ICE credentials, same DTLS
    certificate): answered on it, DTLS, SRTP and slots kept."""


class Resume(WireRequest):
    token: str
    """The ``resume_token`` of the join (or last resume) whose seat is being held."""


class NoFields(WireRequest):
    """leave, ping, get_stage, get_attendance, start_recording, stop_recording."""


class Target(WireRequest):
    """A stage request whose ``participant`` defaults to the sender ("" counts as absent),
    or is ignored (raise_hand, accept_invite, ...: still refused unless a string)."""

    participant: str | None = None


class RequiredTarget(WireRequest):
    participant: str


class Remove(WireRequest):
    participant: str
    ban: bool | None = None
    reason: str | None = None


class GetAttendees(WireRequest):
    # Fields are checked in the order they are declared: the first bad one is named.
    role: Role | None = Field(default=None, strict=False)
    limit: int | None = None
    """Bounded by the room's ``attendees.max_page_size``, a setting: checked by the list."""
    cursor: str | None = None


class SendChat(WireRequest):
    text: str


class React(WireRequest):
    emoji: str
    message_id: int | None = None


class PinMessage(WireRequest):
    message_id: int | None = None
    """Absent or null: unpin."""


class SetMediaMode(WireRequest):
    mode: MediaMode = Field(strict=False)


M = TypeVar("M", bound=WireRequest)


def parse_data(model: type[M], data: Mapping[str, Any]) -> M:
    """``data`` as ``model``, or PodiumError(invalid_request) naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PodiumError(ErrorCode.INVALID_REQUEST, _refusal(model, exc)) from exc


def _refusal(model: type[WireRequest], exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    name = str(error["loc"][0])
    annotation = model.model_fields[name].annotation
    kind: Any = next(k for k in getattr(annotation, "__args__", (annotation,)) if k is not _NONE)
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        if isinstance(error["input"], str):
            choices = ", ".join(str(member) for member in kind)
            return f"field {name!r} must be one of {choices}; not {error['input']!r}"
        kind = str
    return f"field {name!r} must be a {kind.__name__}"


# -- responses and events ------------------------------------------------------
Timestamp = Annotated[float, Field(description="seconds since the Unix epoch")]
Who = Annotated[str, Field(description="an identity; '' means the platform (server API)")]


@with_config(ConfigDict(extra="forbid"))
class Closed(TypedDict):
    """Outbound data names every field it carries: its schema forbids others, so a test
    validating real frames notices a field sent but not described here."""


class Person(Closed):
    """What attendee lists and the stage view show of someone."""

    identity: str
    name: str
    headline: str
    avatar_url: str
    profile_url: str
    role: Role
    joined_at: Timestamp


class Self(Person):
    metadata: dict[str, Any]


class Speaker(Person):
    muted: bool


class You(Closed):
    hand_raised: bool
    invited_by: str | None


class StageView(Closed):
    speakers: list[Speaker]
    hand_queue: NotRequired[list[str]]
    """Only for a host's or moderator's view."""
    you: You


class Counts(Closed):
    host: int
    moderator: int
    speaker: int
    listener: int


def counts(by_role: Mapping[Role, int]) -> Counts:
    return {
        "host": by_role.get(Role.HOST, 0),
        "moderator": by_role.get(Role.MODERATOR, 0),
        "speaker": by_role.get(Role.SPEAKER, 0),
        "listener": by_role.get(Role.LISTENER, 0),
    }


class AttendeePage(Closed):
    items: list[Person]
    next_cursor: str | None
    total: int
    version: int


class AttendeesDelta(Closed):
    version: int
    joined: list[Person]
    left: list[str]
    updated: list[Person]
    counts: Counts
    total: int


class MediaModeInfo(Closed):
    mode: MediaMode
    mixing: bool


class RoomInfo(Closed):
    name: str
    created_at: float
    num_participants: int
    counts: Counts
    media_mode: MediaModeInfo
    recording: bool


class Message(Closed):
    id: int
    sender: str
    text: str
    at: Timestamp


class ChatState(Closed):
    history: list[Message]
    pinned: Message | None


class IceServer(Closed):
    urls: list[str]
    username: NotRequired[str]
    credential: NotRequired[str]


class JoinResponse(Closed):
    protocol: int
    participant: Self
    resume_token: str
    resume_window: float
    room: RoomInfo
    stage: StageView
    attendees: AttendeePage
    chat: ChatState
    slots: int
    ice_servers: list[IceServer]
    reconnect_urls: list[str]
    """The cluster's live nodes: where to resume if one stops answering (else empty)."""


class ResumeResponse(JoinResponse):
    media: bool
    """False: the peer connection was lost too, so the client must send a new offer."""


class OfferResponse(Closed):
    sdp: str


class PingResponse(Closed):
    time: float


class Empty(Closed):
    pass


class RoleEntry(Closed):
    role: Role
    since: Timestamp


class Visit(Closed):
    joined_at: Timestamp
    left_at: Annotated[float | None, Field(description="null: still in the room")]
    roles: list[RoleEntry]


class AttendanceRecord(Closed):
    identity: str
    name: str
    visits: list[Visit]


class AttendanceResponse(Closed):
    records: list[AttendanceRecord]


class SendChatResponse(Closed):
    message: Message


class RecordingStarted(Closed):
    recording: Annotated[str, Field(description="the file's name")]
    by: Who
    at: Timestamp


class RecordingFinished(Closed):
    recording: str
    by: Who
    duration: Annotated[float, Field(ge=0, description="seconds")]


class Slots(Closed):
    slots: list[str | None]


class SpeakerLevel(Closed):
    participant: str
    level: float
    speaking: bool


class Speaking(Closed):
    speakers: list[SpeakerLevel]


class DominantSpeaker(Closed):
    participant: str | None
    previous: str | None


class HandRaisedData(Closed):
    participant: str
    at: Timestamp


class ActedOn(Closed):
    """hand_lowered, invited, invite_cancelled."""

    participant: str
    by: Who


class InviteDeclinedData(Closed):
    participant: str


class RoleChangedData(Closed):
    participant: str
    old: Role
    new: Role
    by: Who


class MutedData(Closed):
    participant: str
    by: Who
    muted: bool


class ParticipantRemoved(Closed):
    participant: str
    by: Who
    banned: bool
    reason: str


class RoomEndedData(Closed):
    by: Who


class ReactionData(Closed):
    sender: str
    emoji: str
    message_id: int | None
    at: Timestamp


class Pinned(Closed):
    message: Message | None
    by: Who


class Disconnected(Closed):
    reason: str


class Reconnecting(Closed):
    """reconnecting, reconnected: a participant's connection is lost (its seat held), back."""

    participant: str


class Draining(Closed):
    deadline: float
    """Unix time by which the server stops: finish and leave (or reconnect elsewhere)."""


class MediaLost(Closed):
    state: str
    """The peer connection's state: ``failed`` or ``closed``; send a new offer."""


class ServerMessage(Closed):
    text: str | None
    data: dict[str, Any] | None
    at: Timestamp
    private: bool


StageEventData = (
    HandRaisedData
    | ActedOn
    | InviteDeclinedData
    | RoleChangedData
    | MutedData
    | ParticipantRemoved
    | RoomEndedData
)

REQUESTS: dict[str, type[WireRequest]] = {
    "join": Join,
    "resume": Resume,
    "offer": Offer,
    "leave": NoFields,
    "ping": NoFields,
    "raise_hand": Target,
    "lower_hand": Target,
    "invite_to_stage": RequiredTarget,
    "cancel_invite": RequiredTarget,
    "accept_invite": Target,
    "decline_invite": Target,
    "move_to_audience": Target,
    "promote": RequiredTarget,
    "demote": RequiredTarget,
    "mute": Target,
    "unmute": Target,
    "end_room": Target,
    "remove": Remove,
    "get_stage": NoFields,
    "get_attendees": GetAttendees,
    "get_attendance": NoFields,
    "send_chat": SendChat,
    "react": React,
    "pin_message": PinMessage,
    "set_media_mode": SetMediaMode,
    "start_recording": NoFields,
    "stop_recording": NoFields,
}
"""Every request type and the model of its ``data``."""

RESPONSES: dict[str, Any] = {
    "join": JoinResponse,
    "resume": ResumeResponse,
    "offer": OfferResponse,
    "ping": PingResponse,
    "get_stage": StageView,
    "get_attendees": AttendeePage,
    "get_attendance": AttendanceResponse,
    "send_chat": SendChatResponse,
    "set_media_mode": MediaModeInfo,
    "start_recording": RecordingStarted,
    "stop_recording": RecordingFinished,
}
"""Response data by request type; every other request answers ``{}``."""

EVENTS: dict[str, Any] = {
    "slots": Slots,
    "media_mode": MediaModeInfo,
    "recording_started": RecordingStarted,
    "recording_finished": RecordingFinished,
    "speaking": Speaking,
    "dominant_speaker": DominantSpeaker,
    "attendees": AttendeesDelta,
    "hand_raised": HandRaisedData,
    "hand_lowered": ActedOn,
    "invited": ActedOn,
    "invite_cancelled": ActedOn,
    "invite_declined": InviteDeclinedData,
    "role_changed": RoleChangedData,
    "muted": MutedData,
    "participant_removed": ParticipantRemoved,
    "room_ended": RoomEndedData,
    "chat": Message,
    "reaction": ReactionData,
    "pinned": Pinned,
    "disconnected": Disconnected,
    "reconnecting": Reconnecting,
    "reconnected": Reconnecting,
    "media_lost": MediaLost,
    "draining": Draining,
    "server_message": ServerMessage,
}
"""Every event and the type of its ``data``."""

_STAGE_EVENTS: dict[type, str] = {
    HandRaised: "hand_raised",
    HandLowered: "hand_lowered",
    Invited: "invited",
    InviteCancelled: "invite_cancelled",
    InviteDeclined: "invite_declined",
    RoleChanged: "role_changed",
    Muted: "muted",
    Removed: "participant_removed",
    RoomEnded: "room_ended",
}


def stage_event_message(event: StageEvent) -> tuple[str, StageEventData] | None:
    """A stage event as the wire tells it: (event name, data); None for those it does not
    (joins, leaves and profile changes reach clients as ``attendees`` deltas).

    The WebSocket events and the webhooks both send this data."""
    name = _STAGE_EVENTS.get(type(event))
    if name is None:
        return None
    data = {k: (str(v) if isinstance(v, Role) else v) for k, v in asdict(event).items()}
    return name, data  # type: ignore[return-value]  # the dataclasses mirror the TypedDicts


def protocol_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every request's data, response's data and event's data."""
    inputs = [
        *((("request", name), "validation", TypeAdapter(m)) for name, m in REQUESTS.items()),
        *((("response", name), "serialization", TypeAdapter(t)) for name, t in RESPONSES.items()),
        *((("event", name), "serialization", TypeAdapter(t)) for name, t in EVENTS.items()),
    ]
    schemas, definitions = TypeAdapter.json_schemas(
        inputs,  # type: ignore[arg-type]
        ref_template="#/$defs/{model}",
    )
    out: dict[str, Any] = {"request": {}, "response": {}, "event": {}}
    for ((kind, name), _mode), schema in schemas.items():
        out[kind][name] = schema
    return {"version": PROTOCOL_VERSION, **out, "$defs": definitions.get("$defs", {})}
