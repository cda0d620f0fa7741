"""Room chat state machine (sans-I/O): messages, reactions, one pinned message.

The caller passes each participant's current role (from ``Stage``) so that
permissions come from the same table as stage moderation, and ``now`` for the
rate limits. As with ``Stage``, a request returns the event to broadcast or
raises ``PodiumError`` having changed nothing: a refused message does not cost
a rate-limit token.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from signaling.room.ratelimit import Rate, RateLimiter
from signaling.room.roles import Action, Role, require
from signaling.wire.errors import ErrorCode, PodiumError

REACTIONS = frozenset({"👍", "👏", "❤️", "😂", "🎉", "🔥", "💯", "🙌", "😮", "🤔"})


@dataclass(frozen=True, slots=True)
class ChatConfig:
    max_length: int = 1000
    history_size: int = 50
    message_rate: Rate = field(default_factory=lambda: Rate(5, 10.0))
    # Reactions are taps, not typing: allow more of them, but still bound the fan-out.
    reaction_rate: Rate = field(default_factory=lambda: Rate(20, 10.0))
    reactions: frozenset[str] = REACTIONS

    def __post_init__(self) -> None:
        if self.max_length < 1 or self.history_size < 1 or not self.reactions:
            raise ValueError(f"invalid chat config: {self}")


@dataclass(frozen=True, slots=True)
class ChatMessage:
    id: int  # increasing in send order
    sender: str
    text: str
    at: float


@dataclass(frozen=True, slots=True)
class Reaction:
    sender: str
    emoji: str
    message_id: int | None  # None: a reaction to the room rather than to a message
    at: float


@dataclass(frozen=True, slots=True)
class PinChanged:
    message: ChatMessage | None  # None: the pin was cleared
    by: str


class Chat:
    def __init__(self, config: ChatConfig | None = None) -> None:
        self.config = config or ChatConfig()
        self._history: deque[ChatMessage] = deque(maxlen=self.config.history_size)
        self._next_id = 1
        self._pinned: ChatMessage | None = None
        self._message_limits = RateLimiter(self.config.message_rate)
        self._reaction_limits = RateLimiter(self.config.reaction_rate)

    @property
    def pinned(self) -> ChatMessage | None:
        return self._pinned

    def history(self) -> list[ChatMessage]:
        """The last ``history_size`` messages, oldest first, for newcomers."""
        return list(self._history)

    def send(self, sender: str, role: Role, text: str, now: float) -> ChatMessage:
        require(Action.SEND_CHAT, role)
        text = text.strip()
        if not text:
            raise PodiumError(ErrorCode.EMPTY_MESSAGE, "message is empty")
        if len(text) > self.config.max_length:
            raise PodiumError(
                ErrorCode.MESSAGE_TOO_LONG,
                f"message is {len(text)} characters; the limit is {self.config.max_length}",
            )
        self._message_limits.take(sender, now)
        message = ChatMessage(self._next_id, sender, text, now)
        self._next_id += 1
        self._history.append(message)
        return message

    def react(
        self, sender: str, role: Role, emoji: str, now: float, message_id: int | None = None
    ) -> Reaction:
        require(Action.REACT, role)
        if emoji not in self.config.reactions:
            raise PodiumError(ErrorCode.UNSUPPORTED_REACTION, f"{emoji!r} is not a reaction")
        if message_id is not None:
            self._find(message_id)
        self._reaction_limits.take(sender, now)
        return Reaction(sender, emoji, message_id, now)

    def pin(self, actor: str, role: Role, message_id: int, now: float) -> PinChanged:
        """Pin a message still in history, replacing any pinned one."""
        require(Action.PIN_MESSAGE, role)
        self._pinned = self._find(message_id)
        return PinChanged(self._pinned, actor)

    def unpin(self, actor: str, role: Role, now: float) -> PinChanged:
        require(Action.PIN_MESSAGE, role)
        if self._pinned is None:
            raise PodiumError(ErrorCode.NOTHING_PINNED, "no message is pinned")
        self._pinned = None
        return PinChanged(None, actor)

    def state(self) -> dict[str, Any]:
        """History and pin as JSON-able data (rate limits are not kept: they refill anyway)."""
        return {
            "next_id": self._next_id,
            "history": [[m.id, m.sender, m.text, m.at] for m in self._history],
            "pinned": self._pinned.id if self._pinned is not None else None,
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        self._history.clear()
        for message_id, sender, text, at in state["history"]:
            self._history.append(ChatMessage(int(message_id), sender, text, float(at)))
        self._next_id = int(state["next_id"])
        pinned = state["pinned"]
        self._pinned = self._find(int(pinned)) if pinned is not None else None

    def forget(self, participant: str) -> None:
        """Drop a departed participant's rate-limit state."""
        self._message_limits.forget(participant)
        self._reaction_limits.forget(participant)

    def _find(self, message_id: int) -> ChatMessage:
        # Ids are consecutive, so the history is a window onto them.
        if self._history:
            index = message_id - self._history[0].id
            if 0 <= index < len(self._history):
                return self._history[index]
        raise PodiumError(ErrorCode.NO_SUCH_MESSAGE, f"message {message_id} is not in history")
