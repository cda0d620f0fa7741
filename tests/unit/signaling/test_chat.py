from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from signaling.room.chat import REACTIONS, Chat, ChatConfig, PinChanged, Reaction
from signaling.room.ratelimit import Rate, RateLimiter
from signaling.room.roles import Role
from signaling.wire.errors import ErrorCode, PodiumError

H, M, S, L = Role.HOST, Role.MODERATOR, Role.SPEAKER, Role.LISTENER


def refused(chat: Chat, code: ErrorCode, request: Callable[[], Any]) -> None:
    before = (chat.history(), chat.pinned)
    with pytest.raises(PodiumError) as error:
        request()
    assert error.value.code == code, error.value
    assert (chat.history(), chat.pinned) == before


def test_send_returns_the_message_to_broadcast() -> None:
    chat = Chat()
    message = chat.send("ann", L, "  Great point on latency!  ", 1.5)
    assert (message.sender, message.text, message.at) == ("ann", "Great point on latency!", 1.5)
    assert chat.history() == [message]
    assert chat.send("bob", L, "+1", 2.0).id > message.id


def test_over_long_and_empty_messages_are_refused() -> None:
    chat = Chat(ChatConfig(max_length=10))
    chat.send("ann", L, "x" * 10, 0.0)
    refused(chat, ErrorCode.MESSAGE_TOO_LONG, lambda: chat.send("ann", L, "x" * 11, 0.0))
    refused(chat, ErrorCode.EMPTY_MESSAGE, lambda: chat.send("ann", L, " \n\t", 0.0))


def test_flooding_is_rate_limited_per_participant() -> None:
    chat = Chat(ChatConfig(message_rate=Rate(5, 10.0)))
    for i in range(5):
        chat.send("ann", L, f"msg {i}", 0.0)
    refused(chat, ErrorCode.RATE_LIMITED, lambda: chat.send("ann", L, "one more", 0.5))
    chat.send("bob", L, "I am not ann", 0.5)
    # One token comes back every 2 s.
    refused(chat, ErrorCode.RATE_LIMITED, lambda: chat.send("ann", L, "too soon", 1.9))
    chat.send("ann", L, "ok now", 2.0)
    refused(chat, ErrorCode.RATE_LIMITED, lambda: chat.send("ann", L, "again", 2.1))
    # A long pause refills the bucket to its capacity, not beyond.
    for i in range(5):
        chat.send("ann", L, f"later {i}", 1000.0)
    refused(chat, ErrorCode.RATE_LIMITED, lambda: chat.send("ann", L, "burst", 1000.0))


def test_refused_messages_cost_no_token() -> None:
    chat = Chat(ChatConfig(max_length=5, message_rate=Rate(1, 10.0)))
    refused(chat, ErrorCode.MESSAGE_TOO_LONG, lambda: chat.send("ann", L, "too long", 0.0))
    refused(chat, ErrorCode.NOT_PERMITTED, lambda: chat.pin("ann", L, 1, 0.0))
    chat.send("ann", L, "ok", 0.0)


def test_rate_limiter_forgets() -> None:
    limiter = RateLimiter(Rate(1, 60.0))
    limiter.take("ann", 0.0)
    with pytest.raises(PodiumError):
        limiter.take("ann", 1.0)
    limiter.forget("ann")
    limiter.take("ann", 1.0)


def test_history_keeps_the_last_n_in_order() -> None:
    chat = Chat(ChatConfig(history_size=50, message_rate=Rate(1000, 1.0)))
    sent = [chat.send(f"p{i % 7}", L, f"message {i}", float(i)) for i in range(120)]
    assert chat.history() == sent[-50:]
    assert [m.text for m in chat.history()][:2] == ["message 70", "message 71"]


def test_reactions_come_from_a_fixed_set() -> None:
    chat = Chat()
    message = chat.send("ann", S, "We shipped!", 0.0)
    assert chat.react("bob", L, "🎉", 1.0) == Reaction("bob", "🎉", None, 1.0)
    assert chat.react("bob", L, "👏", 1.0, message.id) == Reaction("bob", "👏", message.id, 1.0)
    refused(chat, ErrorCode.UNSUPPORTED_REACTION, lambda: chat.react("bob", L, "🍆", 1.0))
    refused(chat, ErrorCode.UNSUPPORTED_REACTION, lambda: chat.react("bob", L, "<b>", 1.0))
    refused(chat, ErrorCode.NO_SUCH_MESSAGE, lambda: chat.react("bob", L, "🎉", 1.0, 99))
    assert "👍" in REACTIONS


def test_reactions_are_rate_limited_separately() -> None:
    chat = Chat(ChatConfig(message_rate=Rate(1, 10.0), reaction_rate=Rate(2, 10.0)))
    chat.send("ann", L, "hi", 0.0)
    chat.react("ann", L, "🔥", 0.0)
    chat.react("ann", L, "🔥", 0.0)
    refused(chat, ErrorCode.RATE_LIMITED, lambda: chat.react("ann", L, "🔥", 0.0))


def test_pin_and_unpin_are_for_moderators() -> None:
    chat = Chat(ChatConfig(history_size=2))
    first = chat.send("ann", L, "Slides: https://example.com/deck", 0.0)
    for role in (S, L):
        refused(chat, ErrorCode.NOT_PERMITTED, partial(chat.pin, "x", role, first.id, 1.0))
    assert chat.pin("mod", M, first.id, 1.0) == PinChanged(first, "mod")
    assert chat.pinned == first
    # Pinning replaces; a pinned message outlives its place in history.
    second = chat.send("bob", L, "Agenda: intro, Q&A", 2.0)
    assert chat.pin("host", H, second.id, 3.0) == PinChanged(second, "host")
    chat.send("cy", L, "three", 4.0)
    chat.send("cy", L, "four", 4.0)
    assert second not in chat.history() and chat.pinned == second
    refused(chat, ErrorCode.NO_SUCH_MESSAGE, lambda: chat.pin("host", H, first.id, 5.0))
    refused(chat, ErrorCode.NOT_PERMITTED, lambda: chat.unpin("cy", L, 5.0))
    assert chat.unpin("mod", M, 5.0) == PinChanged(None, "mod")
    assert chat.pinned is None
    refused(chat, ErrorCode.NOTHING_PINNED, lambda: chat.unpin("mod", M, 6.0))


def test_pin_on_an_empty_history() -> None:
    chat = Chat()
    refused(chat, ErrorCode.NO_SUCH_MESSAGE, lambda: chat.pin("host", H, 1, 0.0))


def test_error_serialises_for_the_wire() -> None:
    chat = Chat(ChatConfig(max_length=3))
    with pytest.raises(PodiumError) as error:
        chat.send("ann", L, "toolong", 0.0)
    assert error.value.to_dict() == {
        "code": "message_too_long",
        "message": "message is 7 characters; the limit is 3",
    }
    assert str(error.value) == "message_too_long: message is 7 characters; the limit is 3"


@pytest.mark.parametrize(
    "config",
    [
        {"max_length": 0},
        {"history_size": 0},
        {"reactions": frozenset()},
    ],
    ids=["length", "history", "reactions"],
)
def test_config_is_validated(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ChatConfig(**config)


@pytest.mark.parametrize(("count", "per"), [(0, 1.0), (1, 0.0)])
def test_rate_is_validated(count: int, per: float) -> None:
    with pytest.raises(ValueError):
        Rate(count, per)
