"""A room's settings (frozen): the server's defaults, or a room's own from the server API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from signaling.room.attendees import AttendeeConfig
from signaling.room.chat import ChatConfig
from signaling.room.stage import StageConfig


@dataclass(frozen=True)
class RoomSettings:
    """Defaults for every room (the server API will let rooms override them)."""

    stage: StageConfig = field(default_factory=StageConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    attendees: AttendeeConfig = field(default_factory=AttendeeConfig)
    empty_timeout: float = 30.0
    """Seconds an empty room lives on (its bans with it) before it is closed."""
    media_mode: str = "forward"
    """How audio reaches listeners: ``forward`` (SFU), ``mix`` or ``auto`` (sfu.mixer.MediaMode)."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """The platform's own data about a room made through the server API."""

    def state(self) -> dict[str, Any]:
        """What the server API may set, as JSON-able data (the rest is the server's)."""
        return {
            "max_participants": self.stage.max_participants,
            "max_on_stage": self.stage.max_on_stage,
            "empty_timeout": self.empty_timeout,
            "media_mode": self.media_mode,
            "metadata": dict(self.metadata),
        }

    def restored(self, state: Mapping[str, Any]) -> RoomSettings:
        """These (a server's defaults) with what ``state`` says a room set."""
        stage = replace(
            self.stage,
            max_participants=int(state["max_participants"]),
            max_on_stage=int(state["max_on_stage"]),
        )
        return replace(
            self,
            stage=stage,
            empty_timeout=float(state["empty_timeout"]),
            media_mode=str(state["media_mode"]),
            metadata=dict(state["metadata"]),
        )
