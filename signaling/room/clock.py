"""Time and deferred work for the room layer, injected so rooms run without an event loop.

The server passes ``signaling.server.runtime.LoopClock``; unit tests a manual clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds (Unix time): what rooms record and show."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...

    def spawn(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` after the current request has been handled (its reply queued)."""
        ...
