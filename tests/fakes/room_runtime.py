"""A manual clock, a recording media façade and an outbox: what a ``Room`` runs on in unit tests.

The fakes implement ``signaling.room.clock.Clock`` and ``signaling.room.media.MediaFacade``
(mypy checks them against the protocols), so the orchestrator is tested without an event
loop, sockets or aiortc.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sfu.errors import MediaError, MediaErrorKind
from sfu.events import RouterEvent
from sfu.mixer import MediaMode, MediaModeState
from sfu.stats import DurationHistogram, MediaStats
from signaling.room.clock import Clock
from signaling.room.media import MediaEventHandler, MediaFacade, PeerLostHandler

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the fakes never wait) to its result, loop-free."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the coroutine suspended: something awaited real I/O")


@dataclass
class _Timer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Time moves only when the test says; deferred work runs on ``advance``."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self._timers: list[_Timer] = []
        self._spawned: list[Callable[[], Awaitable[None]]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self.now + delay, callback)
        self._timers.append(timer)
        return timer

    def spawn(self, work: Callable[[], Awaitable[None]]) -> None:
        self._spawned.append(work)

    def advance(self, seconds: float = 0.0) -> None:
        """Run the deferred work, then move time on, firing timers that fall due in order."""
        self._run_spawned()
        until = self.now + seconds
        while due := sorted((t for t in self._timers if not t.cancelled), key=lambda t: t.due):
            timer = due[0]
            if timer.due > until:
                break
            self._timers.remove(timer)
            self.now = max(self.now, timer.due)
            timer.callback()
            self._run_spawned()
        self.now = until

    def _run_spawned(self) -> None:
        while self._spawned:
            work = self._spawned.pop(0)
            run(work())  # type: ignore[arg-type]


@dataclass
class FakeMedia:
    """Records what the room asked of its media; emits the events a test injects."""

    name: str
    on_event: MediaEventHandler
    on_peer_lost: PeerLostHandler
    joined: dict[str, bool] = field(default_factory=dict)
    """participant → may publish"""
    muted: dict[str, bool] = field(default_factory=dict)
    connected: set[str] = field(default_factory=set)
    mode: MediaMode = MediaMode.FORWARD
    recording_path: Path | None = None
    closed: bool = False
    refuse_offer: bool = False
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def join(self, participant_id: str, may_publish: bool) -> None:
        self.joined[participant_id] = may_publish
        self.calls.append(("join", participant_id))

    async def connect(self, participant_id: str, offer_sdp: str, ice_restart: bool = False) -> str:
        if self.refuse_offer:
            raise MediaError(MediaErrorKind.INVALID_OFFER, "no audio m-line")
        self.connected.add(participant_id)
        return f"answer to {offer_sdp}"

    async def leave(self, participant_id: str) -> None:
        self.joined.pop(participant_id, None)
        self.connected.discard(participant_id)
        self.calls.append(("leave", participant_id))

    def reattach(self, participant_id: str) -> bool:
        self.calls.append(("reattach", participant_id))
        return False

    def set_publish_allowed(self, participant_id: str, allowed: bool) -> None:
        self.joined[participant_id] = allowed

    def set_muted(self, participant_id: str, muted: bool) -> None:
        self.muted[participant_id] = muted

    def set_media_mode(self, mode: MediaMode) -> None:
        self.mode = mode

    def layout(self, participant_id: str) -> tuple[str | None, ...]:
        return (None, None, None) if participant_id in self.connected else ()

    @property
    def media_mode(self) -> MediaModeState:
        return MediaModeState(self.mode, self.mode == MediaMode.MIX)

    @property
    def recording(self) -> Path | None:
        return self.recording_path

    def start_recording(self, path: Path) -> float:
        if self.recording_path is not None:
            raise MediaError(MediaErrorKind.ALREADY_RECORDING, "already")
        self.recording_path = path
        return 1_000.0

    def stop_recording(self) -> float:
        if self.recording_path is None:
            raise MediaError(MediaErrorKind.NOT_RECORDING, "not recording")
        self.recording_path = None
        return 12.5

    def get_stats(self) -> MediaStats:
        return MediaStats(Counter(), Counter(), DurationHistogram(), 0, 0, (), (), ())

    def dump(self) -> dict[str, Any]:
        return {"joined": dict(self.joined)}

    async def close(self) -> None:
        self.closed = True

    def emit(self, event: RouterEvent) -> None:
        self.on_event(event)


class MediaFactory:
    """Makes ``FakeMedia`` and keeps the last one, for the test to inspect and drive."""

    def __init__(self) -> None:
        self.last: FakeMedia | None = None

    def __call__(
        self, name: str, on_event: MediaEventHandler, on_peer_lost: PeerLostHandler
    ) -> MediaFacade:
        self.last = FakeMedia(name, on_event, on_peer_lost)
        return self.last


class Inbox:
    """An ``Outbox`` that keeps every message, decoded."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.closed: str | None = None

    def send(self, text: str) -> None:
        self.messages.append(json.loads(text))

    def close(self, reason: str) -> None:
        self.closed = reason

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m["data"] for m in self.messages if m.get("event") == name]


_: type[Clock] = ManualClock  # the fakes satisfy the protocols
