"""Who is talking: level detection, speaking indicators and the dominant speaker for a room.

Fed at packet rate (an RFC 6464 level, or decoded PCM for producers whose
packets carry none), ticked by the room every few tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt

from sfu.dominant_speaker import DominantSpeakerChanged, DominantSpeakerDetector
from sfu.levels import LevelDetector, Levels, SpeakerChange, SpeakingIndicators


@dataclass(frozen=True, slots=True)
class Activity:
    """A snapshot the slot policy ranks producers by."""

    levels: Levels
    dominant: str | None


@dataclass(frozen=True, slots=True)
class SpeakingChanged:
    """Speaking-indicator changes since the previous report (only the changes)."""

    changes: tuple[SpeakerChange, ...]


@dataclass(slots=True)
class ActivityObserver:
    speaking_interval: float = 0.3
    levels: LevelDetector = field(default_factory=LevelDetector)
    dominant: DominantSpeakerDetector = field(default_factory=DominantSpeakerDetector)
    indicators: SpeakingIndicators = field(default_factory=SpeakingIndicators)
    snapshot: Activity = field(init=False)
    _next_report: float = 0.0

    def __post_init__(self) -> None:
        self.snapshot = Activity(self.levels.tick(0.0), None)

    @property
    def producers(self) -> tuple[str, ...]:
        return self.levels.producers

    def add_producer(self, producer_id: str) -> None:
        self.levels.add_producer(producer_id)
        self.dominant.add_producer(producer_id)

    def remove_producer(self, producer_id: str) -> None:
        self.levels.remove_producer(producer_id)
        self.dominant.remove_producer(producer_id)

    def add_level(self, producer_id: str, level: int, now: float) -> None:
        self.levels.add_level(producer_id, level, now)
        self.dominant.add_level(producer_id, level, now)

    def add_pcm(self, producer_id: str, samples: npt.NDArray[Any], now: float) -> None:
        self.levels.add_pcm(producer_id, samples, now)
        self.dominant.add_pcm(producer_id, samples, now)

    def tick(self, now: float) -> list[SpeakingChanged | DominantSpeakerChanged]:
        events: list[SpeakingChanged | DominantSpeakerChanged] = []
        levels = self.levels.tick(now)
        change = self.dominant.tick(now)
        if change is not None:
            events.append(change)
        self.snapshot = Activity(levels, self.dominant.dominant)
        if now >= self._next_report:
            self._next_report = now + self.speaking_interval
            speaking = self.indicators.update(levels)
            if speaking:
                events.append(SpeakingChanged(tuple(speaking)))
        return events
