"""Audio levels and speaking indicators, sans-I/O.

Levels are RFC 6464 values: 0 is 0 dBov (loudest), 127 is -127 dBov or
silence.  ``add_level`` runs once per inbound packet, so it only appends to
the producer's list; ``tick`` drains all the lists into one numpy array and
computes every producer's state at once (at most every 200 ms by default),
with a fixed number of numpy calls whatever the number of producers.  Time
is always passed in (``now``, seconds), so the same code runs under an event
loop, in tests and in the benchmark.

The speaking rule follows LiveKit: over a 400 ms window a producer speaks when
at least 40 % of its 20 ms frames are louder than -35 dBov; its display level
is the active-time-weighted amplitude, smoothed over two windows and rounded
up to 1/8, so small fluctuations do not turn into signaling traffic.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from sfu.rtp import PTIME

SILENCE = 127
"""RFC 6464 level of digital silence (-127 dBov)."""

TIMER_SLACK = 0.001
"""A tick this early still counts as on time: timers fire a hair early in practice."""

_Item = TypeVar("_Item", np.float64, np.intp)

_LEVELS = np.arange(SILENCE + 1, dtype=np.float64)
# Linear amplitude and power of each level; level 127 is silence, not -127 dBov.
_AMPLITUDE = np.where(_LEVELS < SILENCE, 10.0 ** (-_LEVELS / 20.0), 0.0)
_POWER = _AMPLITUDE**2
_MIN_POWER = 10.0 ** (-SILENCE / 10.0)


def pcm_level(samples: npt.NDArray[Any]) -> int:
    """RFC 6464 level of one frame of PCM, as a browser would put in the header.

    Integer samples are scaled to their type's full scale, float samples are
    taken as full scale 1.0; dBov is the RMS relative to a full-scale square
    wave, so a full-scale sine is -3 dBov.
    """
    x = np.asarray(samples).ravel()
    if x.size == 0:
        return SILENCE
    full_scale = float(np.iinfo(x.dtype).max) + 1.0 if x.dtype.kind in "iu" else 1.0
    x64 = x.astype(np.float64)
    power = float(np.dot(x64, x64)) / x.size / (full_scale * full_scale)
    if power <= _MIN_POWER:
        return SILENCE
    return min(SILENCE, max(0, round(-10.0 * math.log10(power))))


class LevelFeed(ABC):
    """Producer membership and per-packet intake shared by the level detectors.

    Each producer has a plain list that ``add_level`` appends to (the cheapest
    thing Python can do per packet) and a row, in order of arrival, of the
    subclass's numpy state.
    """

    def __init__(self) -> None:
        self._queues: dict[str, list[float]] = {}
        self._queue_list: list[list[float]] = []  # the same lists, in row order

    @property
    def producers(self) -> tuple[str, ...]:
        return tuple(self._queues)

    def add_producer(self, producer_id: str) -> None:
        if producer_id not in self._queues:
            queue: list[float] = []
            self._queues[producer_id] = queue
            self._queue_list.append(queue)
            self._row_added()

    def remove_producer(self, producer_id: str) -> None:
        if producer_id in self._queues:
            row = list(self._queues).index(producer_id)
            del self._queues[producer_id]
            del self._queue_list[row]
            self._row_removed(row)

    @abstractmethod
    def add_level(self, producer_id: str, level: int, now: float) -> None:
        """Record one packet's RFC 6464 level (0..127); unknown producers are ignored."""

    def add_pcm(self, producer_id: str, samples: npt.NDArray[Any], now: float) -> None:
        """Fallback for packets without a level extension: measure the decoded frame."""
        self.add_level(producer_id, pcm_level(samples), now)

    def _drain(self, dtype: type[_Item]) -> tuple[npt.NDArray[_Item], list[int]]:
        """Everything queued since the last drain, row after row, and each row's length."""
        queues = self._queue_list
        lengths = [len(queue) for queue in queues]
        flat = np.fromiter(chain.from_iterable(queues), dtype, sum(lengths))
        for queue in queues:
            queue.clear()
        return flat, lengths

    @abstractmethod
    def _row_added(self) -> None:
        """Append a fresh row to the per-producer state."""

    @abstractmethod
    def _row_removed(self, row: int) -> None:
        """Delete ``row`` from the per-producer state."""


@dataclass(frozen=True, slots=True)
class ProducerLevel:
    """One producer's state over the last window.

    ``level`` is LiveKit's 0..1 display level (0 unless speaking, otherwise a
    multiple of 1/8); ``dbov`` is the window's mean power, for ranking.
    """

    level: float
    dbov: float
    speaking: bool


@dataclass(frozen=True, slots=True)
class Levels:
    """Every producer's state at time ``at``, as of the last evaluation."""

    at: float
    producers: Mapping[str, ProducerLevel]


_EMPTY_LEVELS = Levels(at=0.0, producers=MappingProxyType({}))


class LevelDetector(LevelFeed):
    """Per-producer window power and LiveKit-style speaking state.

    ``tick`` may be called as often as the caller likes; it evaluates at most
    once per ``interval`` over the last ``window`` seconds and otherwise
    returns the last result.  Each evaluation adds one histogram of levels
    per producer to a ring of ``window / interval`` hops, so the window never
    needs the packets' own times.  A producer that stops sending fades to
    silence within one window, since its missing frames count as silent ones.
    """

    def __init__(
        self,
        *,
        window: float = 0.4,
        interval: float = 0.2,
        active_level: int = 35,
        min_active: float = 0.4,
        smooth_windows: int = 2,
        quantum: float = 1 / 8,
    ) -> None:
        super().__init__()
        self._window = window
        self._interval = interval
        self._min_active = min_active
        self._quantum = quantum
        # EMA over ``smooth_windows`` windows, same centre of mass as a moving average.
        self._keep_per_window = 1.0 - 2.0 / (smooth_windows + 1)
        # What one frame at each level adds to the window's sums: whether it
        # is active, its amplitude if active, its power.
        active = np.less_equal(_LEVELS, active_level)
        self._weights = np.stack([active.astype(np.float64), _AMPLITUDE * active, _POWER], axis=1)
        hops = max(1, round(window / interval))
        self._histograms = np.zeros((hops, 0))  # hop x (row, level)
        self._hop_starts = [math.inf] * hops
        self._hop = 0
        self._offsets = np.zeros(0, dtype=np.intp)  # each row's first histogram column
        self._smoothed = np.zeros(0)
        self._last_eval: float | None = None
        self._levels = _EMPTY_LEVELS

    def add_level(self, producer_id: str, level: int, now: float) -> None:
        """Record one packet's RFC 6464 level (0..127); unknown producers are ignored."""
        queue = self._queues.get(producer_id)
        if queue is not None:
            queue.append(level)

    def tick(self, now: float) -> Levels:
        """Every producer's state over the last window."""
        last = self._last_eval
        if last is not None and now - last < self._interval - TIMER_SLACK:
            return self._levels
        self._last_eval = now
        levels, lengths = self._drain(np.intp)
        keys = np.repeat(self._offsets, lengths) + (levels & SILENCE)
        hop = self._hop
        self._histograms[hop] = np.bincount(keys, minlength=self._histograms.shape[1])
        self._hop_starts[hop] = now - self._interval if last is None else last
        self._hop = (hop + 1) % len(self._hop_starts)

        frames = max((now - min(self._hop_starts)) / PTIME, 1.0)
        window = self._histograms.sum(axis=0).reshape(-1, SILENCE + 1)
        active, amplitude, power = (window @ self._weights).T / frames
        speaking = active >= self._min_active
        keep = self._keep_per_window ** ((now - self._hop_starts[hop]) / self._window)
        smoothed = self._smoothed
        smoothed += (1.0 - keep) * (amplitude - smoothed)
        smoothed *= speaking
        shown = np.ceil(smoothed / self._quantum) * self._quantum
        dbov = 10.0 * np.log10(np.maximum(power, _MIN_POWER))

        states = map(ProducerLevel, shown.tolist(), dbov.tolist(), speaking.tolist())
        self._levels = Levels(now, MappingProxyType(dict(zip(self._queues, states, strict=True))))
        return self._levels

    def _row_added(self) -> None:
        new = np.zeros((self._histograms.shape[0], SILENCE + 1))
        self._histograms = np.hstack([self._histograms, new])
        self._offsets = np.arange(len(self._queues)) * (SILENCE + 1)
        self._smoothed = np.append(self._smoothed, 0.0)

    def _row_removed(self, row: int) -> None:
        columns = np.s_[row * (SILENCE + 1) : (row + 1) * (SILENCE + 1)]
        self._histograms = np.delete(self._histograms, columns, axis=1)
        self._offsets = np.arange(len(self._queues)) * (SILENCE + 1)
        self._smoothed = np.delete(self._smoothed, row)


@dataclass(frozen=True, slots=True)
class SpeakerChange:
    """A producer's speaking indicator as it should now be shown."""

    producer_id: str
    level: float
    speaking: bool


class SpeakingIndicators:
    """Turns successive ``Levels`` into the changes worth sending to clients.

    Called every 200-400 ms with the detector's latest result; a producer that
    left while speaking is reported once as silent.
    """

    def __init__(self) -> None:
        self._shown: dict[str, tuple[float, bool]] = {}

    def update(self, levels: Levels) -> list[SpeakerChange]:
        changes: list[SpeakerChange] = []
        shown: dict[str, tuple[float, bool]] = {}
        for pid, state in levels.producers.items():
            now_shown = (state.level, state.speaking)
            if self._shown.get(pid, (0.0, False)) != now_shown:
                changes.append(SpeakerChange(pid, state.level, state.speaking))
            if state.speaking:
                shown[pid] = now_shown
        for pid, (_, speaking) in self._shown.items():
            if speaking and pid not in levels.producers:
                changes.append(SpeakerChange(pid, 0.0, False))
        self._shown = shown
        return changes
