"""The one error type of Podium's signaling layer.

Room state machines and the wire protocol raise the same exception so that a
refused request can be sent back to the client as-is via ``to_dict()``.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every machine-readable error code; clients switch on these, so never rename one.

    docs/protocol.md, the metrics' ``code`` label and both SDKs use exactly this set
    (tests/unit/test_error_codes.py checks the docs).
    """

    # Framing and the request envelope.
    MALFORMED_JSON = "malformed_json"
    INVALID_REQUEST = "invalid_request"
    UNKNOWN_TYPE = "unknown_type"
    MESSAGE_TOO_LARGE = "message_too_large"
    # Joining.
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    ROOM_MISMATCH = "room_mismatch"
    ALREADY_JOINED = "already_joined"
    NOT_JOINED = "not_joined"
    RESUME_FAILED = "resume_failed"
    SERVER_DRAINING = "server_draining"
    REDIRECT = "redirect"

    # Who may do what.
    NOT_PERMITTED = "not_permitted"
    NO_SUCH_PARTICIPANT = "no_such_participant"
    NOT_IN_ROOM = "not_in_room"
    ALREADY_IN_ROOM = "already_in_room"
    BANNED = "banned"
    ROOM_ENDED = "room_ended"
    ROOM_FULL = "room_full"
    # Stage.
    STAGE_FULL = "stage_full"
    ALREADY_ON_STAGE = "already_on_stage"
    NOT_ON_STAGE = "not_on_stage"
    HAND_ALREADY_RAISED = "hand_already_raised"
    HAND_NOT_RAISED = "hand_not_raised"
    ALREADY_INVITED = "already_invited"
    NO_INVITATION = "no_invitation"
    ALREADY_MUTED = "already_muted"
    NOT_MUTED = "not_muted"
    # Chat.
    EMPTY_MESSAGE = "empty_message"
    MESSAGE_TOO_LONG = "message_too_long"
    RATE_LIMITED = "rate_limited"
    UNSUPPORTED_REACTION = "unsupported_reaction"
    NO_SUCH_MESSAGE = "no_such_message"
    NOTHING_PINNED = "nothing_pinned"
    # Media.
    INVALID_SDP = "invalid_sdp"
    INVALID_STATE = "invalid_state"
    # Recording.
    RECORDING_UNAVAILABLE = "recording_unavailable"
    ALREADY_RECORDING = "already_recording"
    NOT_RECORDING = "not_recording"
    # The server's own failure; the session goes on.
    INTERNAL_ERROR = "internal_error"
    # Server API (HTTP) only: docs/api.md says when.
    ROOM_NOT_FOUND = "room_not_found"
    PARTICIPANT_NOT_FOUND = "participant_not_found"
    ROOM_EXISTS = "room_exists"
    ROOM_ENDING = "room_ending"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TOO_LARGE = "request_too_large"
    HTTP_ERROR = "http_error"


class PodiumError(Exception):
    """A refused request. The object that raised it has not changed state."""

    code: str
    """An ``ErrorCode`` value; a str so a client meets codes of newer servers unharmed."""
    message: str
    request_id: int | str | None = None
    """Set by the protocol layer so the error reply names the request it answers."""

    url: str | None = None
    """``redirect`` only: the node to join instead."""

    def __init__(self, code: ErrorCode | str, message: str, url: str | None = None) -> None:
        # Keep both in args so the exception pickles and reprs faithfully.
        super().__init__(str(code), message)
        self.code = str(code)
        self.message = message
        self.url = url

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        found = {"code": self.code, "message": self.message}
        if self.url is not None:
            found["url"] = self.url
        return found
