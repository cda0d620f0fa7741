"""Audio levels and speaking indicators, sans-I/O.

Levels are RFC 6464 values: 0 is 0 dBov (loudest), 127 is -127 dBov or
silence.  ``add_level`` runs once per inbound packet, so it only appends to a
flat list; ``tick`` drains that list into numpy arrays indexed by a per-producer
row and does every per-producer computation at once, across all producers of
the room.  Time is always passed in (``now``, seconds), so the same code runs
under an event loop, in tests and in the benchmark.

The speaking rule follows LiveKit: over a 400 ms window a producer speaks when
at least 40 % of its 20 ms frames are louder than -35 dBov; its display level
is the active-time-weighted amplitude, smoothed over two windows and rounded
up to 1/8, so small fluctuations do not turn into signaling traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

SILENCE = 127
"""RFC 6464 level of digital silence (-127 dBov)."""

FRAME = 0.02
"""Duration of one audio packet (WebRTC's Opus default): a missing one counts as silence."""

TIMER_SLACK = 0.001
"""A tick this early still counts as on time: timers fire a hair early in practice."""

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]

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


class LevelFeed:
    """Producer rows and the packet-rate intake shared by the level detectors.

    Each producer owns a row of the subclass's numpy state.  A removed
    producer's row is only recycled after the next drain, so packets still
    buffered for it can never be credited to a newcomer.
    """

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}
        self._free: list[int] = []
        self._released: list[int] = []
        self._capacity = 0
        self._pending: list[float] = []

    @property
    def producers(self) -> tuple[str, ...]:
        return tuple(self._rows)

    def add_producer(self, producer_id: str) -> None:
        if producer_id in self._rows:
            return
        if not self._free:
            old, self._capacity = self._capacity, max(8, 2 * self._capacity)
            self._resize(self._capacity)
            self._free.extend(range(self._capacity - 1, old - 1, -1))
        self._rows[producer_id] = self._free.pop()
        self._membership_changed()

    def remove_producer(self, producer_id: str) -> None:
        row = self._rows.pop(producer_id, None)
        if row is not None:
            self._released.append(row)
            self._membership_changed()

    def add_level(self, producer_id: str, level: int, now: float) -> None:
        """Record one packet's RFC 6464 level; unknown producers are ignored."""
        row = self._rows.get(producer_id)
        if row is not None:
            self._pending += (row, level, now)

    def add_pcm(self, producer_id: str, samples: npt.NDArray[Any], now: float) -> None:
        """Fallback for packets without a level extension: measure the decoded frame."""
        self.add_level(producer_id, pcm_level(samples), now)

    def _drain(self) -> tuple[IntArray, IntArray, FloatArray]:
        """Buffered packets as (rows, levels, arrival times), in arrival order."""
        flat = np.fromiter(self._pending, np.float64, len(self._pending)).reshape(-1, 3)
        self._pending.clear()
        rows = flat[:, 0].astype(np.intp)
        levels = np.clip(flat[:, 1], 0, SILENCE).astype(np.intp)
        times = flat[:, 2]
        if self._released:
            released = np.array(self._released, dtype=np.intp)
            keep = ~np.isin(rows, released)
            rows, levels, times = rows[keep], levels[keep], times[keep]
            self._reset(released)
            self._free.extend(self._released)
            self._released.clear()
        return rows, levels, times

    def _resize(self, capacity: int) -> None:
        """Grow the per-row state to ``capacity`` rows; new rows start reset."""
        raise NotImplementedError

    def _reset(self, rows: IntArray) -> None:
        """Return recycled rows to their initial state."""
        raise NotImplementedError

    def _membership_changed(self) -> None:
        """Hook: the set of producers changed."""


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
    at: float
    producers: Mapping[str, ProducerLevel]

    def loudest(self, n: int) -> list[str]:
        """The ``n`` loudest producers by window power, loudest first."""
        ranked = sorted(self.producers.items(), key=lambda item: item[1].dbov, reverse=True)
        return [pid for pid, _ in ranked[:n]]


_EMPTY_LEVELS = Levels(at=0.0, producers=MappingProxyType({}))


class LevelDetector(LevelFeed):
    """Per-producer window power and LiveKit-style speaking state.

    ``tick`` may be called as often as the caller likes; it evaluates at most
    once per ``interval`` over the last ``window`` seconds (a ring of
    ``window / interval`` per-hop sums) and otherwise returns the last result.
    A producer that stops sending fades to silence within one window, since
    its missing frames count as silent ones.
    """

    def __init__(
        self,
        *,
        window: float = 0.4,
        interval: float = 0.1,
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
        self._hops = max(1, round(window / interval))
        # Per-level weights of the three per-hop sums: active frames, their
        # amplitude, power.
        active = np.less_equal(_LEVELS, active_level)
        self._weights = np.stack([active.astype(np.float64), _AMPLITUDE * active, _POWER])
        self._ring = np.zeros((self._hops, 3, 0))
        self._hop_start = np.full(self._hops, np.inf)
        self._hop = 0
        self._smoothed = np.zeros(0)
        self._last_eval: float | None = None
        self._levels = _EMPTY_LEVELS

    def tick(self, now: float) -> Levels:
        last = self._last_eval
        if last is not None and now - last < self._interval - TIMER_SLACK:
            return self._levels
        start = now - self._interval if last is None else last
        self._last_eval = now
        capacity = self._capacity
        rows, levels, _ = self._drain()

        # One bincount yields the three per-row sums of this hop.
        keys = (rows + np.arange(3)[:, None] * capacity).ravel()
        sums = np.bincount(keys, weights=self._weights[:, levels].ravel(), minlength=3 * capacity)
        self._ring[self._hop] = sums.reshape(3, capacity)
        self._hop_start[self._hop] = start
        self._hop = (self._hop + 1) % self._hops

        frames = max((now - self._hop_start.min()) / FRAME, 1.0)
        active, amplitude, power = self._ring.sum(axis=0) / frames
        speaking = active >= self._min_active
        alpha = 1.0 - self._keep_per_window ** ((now - start) / self._window)
        smoothed = self._smoothed
        self._smoothed = np.where(speaking, smoothed + alpha * (amplitude - smoothed), 0.0)
        shown = np.ceil(self._smoothed / self._quantum) * self._quantum
        dbov = 10.0 * np.log10(np.maximum(power, _MIN_POWER))

        shown_l, dbov_l, speaking_l = shown.tolist(), dbov.tolist(), speaking.tolist()
        self._levels = Levels(
            at=now,
            producers=MappingProxyType(
                {
                    pid: ProducerLevel(shown_l[row], dbov_l[row], speaking_l[row])
                    for pid, row in self._rows.items()
                }
            ),
        )
        return self._levels

    def _resize(self, capacity: int) -> None:
        ring = np.zeros((self._hops, 3, capacity))
        ring[:, :, : self._ring.shape[2]] = self._ring
        self._ring = ring
        self._smoothed = np.concatenate([self._smoothed, np.zeros(capacity - self._smoothed.size)])

    def _reset(self, rows: IntArray) -> None:
        self._ring[:, :, rows] = 0.0
        self._smoothed[rows] = 0.0


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
