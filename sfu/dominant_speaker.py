"""Dominant speaker identification, sans-I/O.

The algorithm is Volfin & Cohen's "Dominant Speaker Identification for
Multipoint Videoconferencing" as Jitsi and mediasoup run it on RFC 6464
levels instead of a spectrum: each 20 ms frame's level, once above the
producer's own noise floor, is read as a number of active sub-bands (0-12 of
13); a medium block counts the frames of 100 ms with more than 7 active
sub-bands, a long block the fully active medium blocks of one second.  Each
scale gives a speech activity score, and a challenger replaces the dominant
speaker only when its score beats the dominant one's on all three scales.
That is what keeps a cough or a "mm-hm" from stealing the floor.

Packets are placed on a 20 ms slot grid by arrival time, each producer on its
own clock that never runs backwards: a burst that follows a network stall
fills the stall's slots instead of colliding, and a true gap (mute, loss,
packets that stopped) reads as silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sfu.levels import FRAME, SILENCE, TIMER_SLACK, IntArray, LevelFeed

N1 = 13  # sub-bands per frame
N2 = 5  # frames per medium block
N3 = 10  # medium blocks per long block
MEDIUM_THRESHOLD = 7  # a frame counts towards its medium block above this many sub-bands
LONG_THRESHOLD = 4  # a medium block counts towards the long block above this many frames
C1, C2, C3 = 3.0, 2.0, 0.0  # log-ratio a challenger must exceed: immediate, medium, long
SUBBAND = (SILENCE + N1 - 1) // N1  # levels per sub-band
HISTORY = N2 * N3  # frames looked at
MIN_SCORE = 1e-10
FLOOR_WINDOW = round(15.0 / FRAME)  # frames before the noise floor may rise again
IDLE_SLOTS = 2  # a producer silent this many slots is read as silent now
MAX_LEAD = 3  # a packet is never placed more slots than this after its arrival
_SLOTS = 64  # ring length, at least HISTORY + MAX_LEAD + 1
_AGES = np.arange(HISTORY)
_NO_SLOT = np.iinfo(np.int64).min // 2


def _log_scores(n: int, p: float, lam: float) -> npt.NDArray[np.float64]:
    """Log of the speech activity score for 0..n active units out of n."""
    scores = [
        math.log(math.comb(n, v)) + v * math.log(p) + (n - v) * math.log(1 - p)
        - math.log(lam) + lam * v
        for v in range(n + 1)
    ]
    return np.log(np.maximum(scores, MIN_SCORE))


_IMMEDIATE_LOG = _log_scores(N1, 0.5, 0.78)
_MEDIUM_LOG = _log_scores(N2, 0.5, 24.0)
_LONG_LOG = _log_scores(N3, 0.5, 47.0)
_SILENT_LOG = math.log(MIN_SCORE)


@dataclass(frozen=True, slots=True)
class DominantSpeakerChanged:
    """``producer_id`` now dominates the room (None: nobody, its last producer left)."""

    producer_id: str | None
    previous: str | None
    at: float


class DominantSpeakerDetector(LevelFeed):
    """Feed it every packet's level; ``tick`` decides every ``interval`` seconds.

    Removing the dominant producer forces a decision at the next tick, against
    silence: the most active remaining producer takes over, or nobody if all
    are quiet.
    """

    def __init__(self, *, interval: float = 0.3) -> None:
        super().__init__()
        self._interval = interval
        self._ring = np.zeros((0, _SLOTS), dtype=np.int64)  # loudness: 127 - level
        self._stamp = np.zeros((0, _SLOTS), dtype=np.int64)  # the slot each cell holds
        self._head = np.zeros(0, dtype=np.int64)  # each producer's last placed slot
        self._floor = np.zeros(0, dtype=np.int64)  # noise floor loudness; 0 = unknown
        self._next_floor = np.zeros(0, dtype=np.int64)
        self._floor_frames = np.zeros(0, dtype=np.int64)
        self._ids: tuple[str, ...] = ()
        self._id_rows: IntArray = np.zeros(0, dtype=np.intp)
        self._dominant: str | None = None
        self._last_decision: float | None = None
        self._decide_now = False

    @property
    def dominant(self) -> str | None:
        return self._dominant

    def remove_producer(self, producer_id: str) -> None:
        super().remove_producer(producer_id)
        if producer_id == self._dominant:
            self._decide_now = True

    def tick(self, now: float) -> DominantSpeakerChanged | None:
        last = self._last_decision
        if not self._decide_now and last is not None and now - last < self._interval - TIMER_SLACK:
            return None
        self._last_decision = now
        self._decide_now = False
        self._place(*self._drain())
        winner = self._decide(now)
        if winner == self._dominant:
            return None
        previous, self._dominant = self._dominant, winner
        return DominantSpeakerChanged(winner, previous, now)

    def _place(self, rows: IntArray, levels: IntArray, times: npt.NDArray[np.float64]) -> None:
        """Write a batch of packets into the slot rings and update the noise floors."""
        n = rows.size
        if n == 0:
            return
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        loud = SILENCE - levels[order]
        slots = np.floor(times[order] / FRAME).astype(np.int64)
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(rows[1:], rows[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        rank = np.arange(n) - starts[group]

        # Per producer, slot_i = max(arrival slot_i, slot_{i-1} + 1): a running
        # max of (slot - rank), segmented by offsetting each producer's values
        # past the previous producer's.
        shifted = slots - rank
        shifted[starts] = np.maximum(shifted[starts], self._head[rows[starts]] + 1)
        base = int(shifted.min())
        span = int(shifted.max()) - base + 1
        offset = group * span
        placed = np.maximum.accumulate(shifted - base + offset) - offset + base + rank
        placed = np.minimum(placed, slots + MAX_LEAD)

        ends = np.append(starts[1:], n) - 1
        self._head[rows[ends]] = placed[ends]
        cells = placed % _SLOTS
        self._ring[rows, cells] = loud
        self._stamp[rows, cells] = placed
        self._update_floors(rows[starts], loud, starts)

    def _update_floors(self, rows: IntArray, loud: IntArray, starts: IntArray) -> None:
        """The noise floor drops at once and rises slowly, to the geometric mean
        of itself and the quietest level of the last 15 s of frames."""
        heard = loud > 0
        quietest = np.minimum.reduceat(np.where(heard, loud, SILENCE + 1), starts)
        frames = np.add.reduceat(heard, starts)
        floor = self._floor[rows]
        lower = (frames > 0) & ((floor == 0) | (quietest < floor))
        track = (frames > 0) & ~lower
        pending = self._next_floor[rows]
        pending = np.where(track & ((pending == 0) | (quietest < pending)), quietest, pending)
        counted = self._floor_frames[rows] + np.where(track, frames, 0)
        rise = track & (counted >= FLOOR_WINDOW)
        floor = np.where(lower, quietest, floor)
        floor = np.where(rise, np.sqrt(floor * pending).astype(np.int64), floor)
        restart = lower | rise
        self._floor[rows] = floor
        self._next_floor[rows] = np.where(restart, 0, pending)
        self._floor_frames[rows] = np.where(restart, 0, counted)

    def _decide(self, now: float) -> str | None:
        ids, rows = self._ids, self._id_rows
        if not ids:
            return None
        newest = np.maximum(self._head[rows], math.floor(now / FRAME) - IDLE_SLOTS)
        slots = newest[:, None] - _AGES
        cells = slots % _SLOTS
        loud = self._ring[rows[:, None], cells]
        loud[self._stamp[rows[:, None], cells] != slots] = 0
        # Frames within one sub-band of the producer's noise floor are silence.
        bands = np.where(loud >= (self._floor[rows] + SUBBAND)[:, None], loud // SUBBAND, 0)
        mediums = (bands > MEDIUM_THRESHOLD).reshape(len(ids), N3, N2).sum(axis=2)
        longs = (mediums > LONG_THRESHOLD).sum(axis=1)
        immediate = _IMMEDIATE_LOG[bands[:, 0]]
        medium = _MEDIUM_LOG[mediums[:, 0]]
        long = _LONG_LOG[longs]

        incumbent = ids.index(self._dominant) if self._dominant in self._rows else -1
        if incumbent >= 0:
            reference = (
                float(immediate[incumbent]), float(medium[incumbent]), float(long[incumbent])
            )
        else:
            reference = _SILENT_LOG, _SILENT_LOG, _SILENT_LOG
        wins = (
            (immediate - reference[0] > C1)
            & (medium - reference[1] > C2)
            & (long - reference[2] > C3)
        )
        if incumbent >= 0:
            wins[incumbent] = False
        if not wins.any():
            return self._dominant if incumbent >= 0 else None
        # Several challengers: the strongest over the medium term wins.
        return ids[int(np.argmax(np.where(wins, medium, -np.inf)))]

    def _membership_changed(self) -> None:
        self._ids = tuple(self._rows)
        self._id_rows = np.fromiter(self._rows.values(), np.intp, len(self._rows))

    def _resize(self, capacity: int) -> None:
        extra = capacity - self._head.size
        self._ring = np.vstack([self._ring, np.zeros((extra, _SLOTS), dtype=np.int64)])
        self._stamp = np.vstack([self._stamp, np.full((extra, _SLOTS), _NO_SLOT)])
        self._head = np.append(self._head, np.full(extra, _NO_SLOT))
        self._floor = np.append(self._floor, np.zeros(extra, dtype=np.int64))
        self._next_floor = np.append(self._next_floor, np.zeros(extra, dtype=np.int64))
        self._floor_frames = np.append(self._floor_frames, np.zeros(extra, dtype=np.int64))

    def _reset(self, rows: IntArray) -> None:
        self._stamp[rows] = _NO_SLOT
        self._head[rows] = _NO_SLOT
        self._floor[rows] = 0
        self._next_floor[rows] = 0
        self._floor_frames[rows] = 0
