"""The media layer's one error type: what a request to media can be refused for.

The signaling layer maps each kind to its wire error code; the media layer knows
nothing of the wire.
"""

from __future__ import annotations

from enum import StrEnum


class MediaErrorKind(StrEnum):
    INVALID_OFFER = "invalid_offer"
    """The offer cannot be parsed or applied, or offers nothing Podium carries."""
    INVALID_STATE = "invalid_state"
    """Media already negotiated, or the participant left while negotiating."""
    ALREADY_RECORDING = "already_recording"
    NOT_RECORDING = "not_recording"


class MediaError(Exception):
    """A refused media request; the media room has not changed state."""

    def __init__(self, kind: MediaErrorKind, message: str) -> None:
        super().__init__(kind, message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"
