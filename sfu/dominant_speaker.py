"""Dominant speaker identification, sans-I/O.

The algorithm is Volfin & Cohen's "Dominant Speaker Identification for
Multipoint Videoconferencing" as Jitsi and mediasoup run it on RFC 6464
levels instead of a spectrum: a 20 ms frame's level, once above the
producer's own noise floor, is read as a number of active sub-bands (0-12 of
13); a medium block counts the loud frames of 100 ms, a long block the
active medium blocks of the last 0.6 s.  Each scale gives a
speech activity score, and a challenger replaces the dominant speaker only
when it beats the dominant one on all three scales: it must be speaking now,
over the last 100 ms and over the last 0.6 s.  That is what keeps a cough or
a short "mm-hm" from stealing the floor.

Tuned against ``benchmarks.speakers`` (Jitsi's values in brackets): decisions
every 50 ms [300 ms], a long block of 6 [10] medium blocks, and a medium block
is active when 2 [5] of its 5 frames are loud, since per-packet levels dip
between syllables and words.  With Jitsi's values a new speaker typically
needs 0.5-1 s to take over; these halve that, at the price of switching to
more of the "mm-hm"s uttered while the dominant speaker pauses.

Packets are placed on a 20 ms slot grid by arrival time, each producer on its
own clock that never runs backwards: a burst that follows a network stall
fills the stall's slots instead of colliding, and a true gap (DTX, mute, loss,
packets that stopped) reads as silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sfu.levels import FRAME, SILENCE, TIMER_SLACK, LevelFeed

N1 = 13  # sub-bands per frame
N2 = 5  # frames per medium block
N3 = 6  # medium blocks per long block
MEDIUM_THRESHOLD = 7  # a frame is loud above this many sub-bands
LONG_THRESHOLD = 1  # a medium block counts towards the long block above this many loud frames
C1, C2, C3 = 3.0, 2.0, 0.0  # log-ratios a challenger must exceed: immediate, medium, long
SUBBAND = (SILENCE + N1 - 1) // N1  # levels per sub-band
MIN_SCORE = 1e-10
FLOOR_WINDOW = 15.0  # seconds between rises of a noise floor
FLOOR_EPOCH = 1.0  # seconds: noise floors learnt from packets take effect on this grid
READ_LAG = 2  # slots: medium and long blocks end this long ago, so late packets count
MAX_LEAD = 3  # slots: a packet is never placed further than this after its arrival

_HISTORY = N2 * N3  # frames looked at
_SLOTS = 64  # ring length: a power of two, > _HISTORY + READ_LAG + MAX_LEAD
_SLOTS_PER_SECOND = round(1 / FRAME)
_IDLE = READ_LAG * FRAME  # a producer whose newest packet is older than this is silent now
_AGES = np.arange(_HISTORY)
_EMPTY_CELL = np.iinfo(np.int64).min  # decodes to a slot no packet can have
_UNKNOWN_FLOOR = SILENCE + 1
_MEDIUM_LOUDNESS = (MEDIUM_THRESHOLD + 1) * SUBBAND  # loudness = 127 - level


def _log_scores(n: int, p: float, lam: float) -> npt.NDArray[np.float64]:
    """Log of the speech activity score for 0..n active units out of n."""
    scores = [
        math.log(math.comb(n, v))
        + v * math.log(p)
        + (n - v) * math.log(1 - p)
        - math.log(lam)
        + lam * v
        for v in range(n + 1)
    ]
    return np.log(np.maximum(scores, MIN_SCORE))


_IMMEDIATE_LOG = _log_scores(N1, 0.5, 0.78)
_MEDIUM_LOG = _log_scores(N2, 0.5, 24.0)
_LONG_LOG = _log_scores(N3, 0.5, 47.0)
_SILENT_SCORES = np.array([[_IMMEDIATE_LOG[0]], [_MEDIUM_LOG[0]], [_LONG_LOG[0]]])
_MARGINS = np.array([[C1], [C2], [C3]])
# _BEATS[b]: the fewest sub-bands that pass the immediate test against b (99: none).
_BEATS = [
    next((c for c, log in enumerate(_IMMEDIATE_LOG) if log - _IMMEDIATE_LOG[b] > C1), 99)
    for b in range(N1 + 1)
]


@dataclass(frozen=True, slots=True)
class DominantSpeakerChanged:
    """``producer_id`` now dominates the room (None: nobody, its last producer left)."""

    producer_id: str | None
    previous: str | None
    at: float


class DominantSpeakerDetector(LevelFeed):
    """Feed it every packet's level; ``tick`` decides every ``interval`` seconds.

    A challenger must first be speaking louder than the dominant speaker right
    now, which a few Python comparisons on the newest packets settle; only
    then are the packets placed and all scales computed, vectorised across
    producers.  Noise floors learnt from the packets take effect once a
    second, so a producer is heard from its first full second on.  Removing
    the dominant producer forces a decision at the next tick, against
    silence: the most active remaining producer takes over, or nobody if all
    are quiet.
    """

    def __init__(self, *, interval: float = 0.05) -> None:
        super().__init__()
        self._interval = interval
        # One row of _SLOTS cells per producer, each ``slot << 7 | loudness``:
        # a cell is only read for the slot it holds.
        self._ring = np.zeros((0, _SLOTS), dtype=np.int64)
        self._head = np.zeros(0, dtype=np.int64)  # each producer's last placed slot
        self._floor = np.zeros(0, dtype=np.int64)  # noise floor in use, as loudness
        self._learnt = np.zeros(0, dtype=np.int64)  # noise floor as of the last packet
        self._quietest = np.zeros(0, dtype=np.int64)  # since the floor last rose
        # Each producer's last placed packet (loudness, arrival time), and
        # the floors in use as a list, for the per-tick pre-check.
        self._newest: list[tuple[int, float]] = []
        self._floors: list[int] = []
        self._floor_since: float | None = None
        self._epoch: int | None = None
        self._dominant: str | None = None
        self._dominant_row = -1
        self._last_decision: float | None = None
        self._decide_now = False

    @property
    def dominant(self) -> str | None:
        return self._dominant

    def add_level(self, producer_id: str, level: int, now: float) -> None:
        """Record one packet's RFC 6464 level (0..127) at its arrival time.

        Unknown producers are ignored.
        """
        queue = self._queues.get(producer_id)
        if queue is not None:
            queue.append(level)
            queue.append(now)

    def remove_producer(self, producer_id: str) -> None:
        super().remove_producer(producer_id)
        if producer_id == self._dominant:
            self._decide_now = True

    def tick(self, now: float) -> DominantSpeakerChanged | None:
        """The new dominant speaker, if this tick's decision changed it."""
        last = self._last_decision
        forced = self._decide_now
        if not forced and last is not None and now - last < self._interval - TIMER_SLACK:
            return None
        self._last_decision = now
        self._decide_now = False
        epoch = math.floor(now / FLOOR_EPOCH)
        placed = epoch != self._epoch
        if placed:
            self._place()
            self._epoch = epoch
            self._publish_floors(now)
        if not forced and not self._contested(now):
            return None
        if not placed:
            self._place()
        winner = self._decide(now)
        if winner == self._dominant:
            return None
        previous, self._dominant = self._dominant, winner
        self._locate_dominant()
        return DominantSpeakerChanged(winner, previous, now)

    def _contested(self, now: float) -> bool:
        """Whether anyone passes the immediate test against the dominant speaker.

        Reads the same newest packets and floors as ``_decide`` (floors only
        change on the FLOOR_EPOCH grid, just before this check), so skipping
        the decision when nobody passes changes nothing.
        """
        recent = now - _IDLE
        dominant = self._dominant_row
        needed = _BEATS[self._band_now(dominant, recent) if dominant >= 0 else 0]
        if needed > N1:
            return False
        return any(
            self._band_now(row, recent) >= needed
            for row in range(len(self._queue_list))
            if row != dominant
        )

    def _band_now(self, row: int, recent: float) -> int:
        """Active sub-bands of the producer's newest packet: 0 unless it arrived
        since ``recent`` and is above the noise floor."""
        queue = self._queue_list[row]
        if queue:
            loudness, arrived = SILENCE - (int(queue[-2]) & SILENCE), queue[-1]
        else:
            loudness, arrived = self._newest[row]
        if arrived < recent or loudness < self._floors[row] + SUBBAND:
            return 0
        return loudness // SUBBAND

    def _place(self) -> None:
        """Move the queued packets into the slot rings and learn the noise floors."""
        flat, lengths = self._drain(np.float64)
        counts = np.array(lengths, dtype=np.int64) >> 1
        fed = np.flatnonzero(counts)
        if fed.size == 0:
            return
        packets = flat.reshape(-1, 2)
        loud = SILENCE - (packets[:, 0].astype(np.int64) & SILENCE)
        slots = (packets[:, 1] * _SLOTS_PER_SECOND).astype(np.int64)
        row = np.repeat(np.arange(counts.size), counts)
        starts = np.cumsum(counts) - counts
        first = starts[fed]
        last = first + counts[fed] - 1

        # Per producer, slot_i = max(arrival slot_i, slot_{i-1} + 1), i.e. a
        # running max of (slot - rank), segmented by lifting each producer's
        # values far above the previous producer's; the same whatever the
        # batches.  Packets are written no further than MAX_LEAD slots
        # after their arrival, lest a faster packet rate run away.
        rank = np.arange(slots.size) - starts[row]
        shifted = slots - rank
        shifted[first] = np.maximum(shifted[first], self._head[fed] + 1)
        lift = row << 40
        placed = np.maximum.accumulate(shifted + lift) - lift + rank
        self._head[fed] = placed[last]
        placed = np.minimum(placed, slots + MAX_LEAD)
        self._ring[row, placed & (_SLOTS - 1)] = placed << 7 | loud

        newest = zip(loud[last].tolist(), packets[last, 1].tolist(), strict=True)
        for producer, packet in zip(fed.tolist(), newest, strict=True):
            self._newest[producer] = packet
        heard = np.minimum.reduceat(np.where(loud > 0, loud, _UNKNOWN_FLOOR), first)
        self._learnt[fed] = np.minimum(self._learnt[fed], heard)
        self._quietest[fed] = np.minimum(self._quietest[fed], heard)

    def _publish_floors(self, now: float) -> None:
        """Put the learnt noise floors in use.

        A floor drops at once to the quietest frame heard; every 15 s it rises
        to the geometric mean of itself and the quietest frame since, so that
        speech cannot drag it up quickly.
        """
        if self._floor_since is None:
            self._floor_since = now
        elif now - self._floor_since >= FLOOR_WINDOW:
            both = (self._quietest < _UNKNOWN_FLOOR) & (self._learnt < _UNKNOWN_FLOOR)
            risen = np.sqrt(self._learnt * self._quietest).astype(np.int64)
            self._learnt = np.where(both, risen, self._learnt)
            self._quietest[:] = _UNKNOWN_FLOOR
            self._floor_since = now
        self._floor = self._learnt.copy()
        self._floors = self._floor.tolist()

    def _decide(self, now: float) -> str | None:
        ids = tuple(self._queues)
        if not ids:
            return None
        # Everyone's blocks end at the same slot, one that all their packets
        # have reached unless delayed by more than READ_LAG slots.
        slots = math.floor(now * _SLOTS_PER_SECOND) - READ_LAG - _AGES
        cells = self._ring[:, slots & (_SLOTS - 1)]
        loud = np.where(cells >> 7 == slots, cells & SILENCE, 0)
        # Frames within one sub-band of the producer's noise floor are silence.
        audible = self._floor + SUBBAND
        frames = loud >= np.maximum(audible, _MEDIUM_LOUDNESS)[:, None]
        mediums = frames.reshape(len(ids), N3, N2).sum(axis=2)
        longs = (mediums > LONG_THRESHOLD).sum(axis=1)
        recent = now - _IDLE
        newest = np.array([value if at >= recent else 0 for value, at in self._newest])
        # The immediate scale reads each producer's newest packet instead.
        immediate = _IMMEDIATE_LOG[np.where(newest >= audible, newest // SUBBAND, 0)]
        medium = _MEDIUM_LOG[mediums[:, 0]]
        long = _LONG_LOG[longs]

        scores = np.stack([immediate, medium, long])
        incumbent = self._dominant_row
        # Against the dominant speaker, or against silence if there is none.
        reference = scores[:, incumbent : incumbent + 1] if incumbent >= 0 else _SILENT_SCORES
        wins = (scores - reference > _MARGINS).all(axis=0)
        if not wins.any():
            return self._dominant if incumbent >= 0 else None
        # Several challengers: the strongest over the medium term wins.
        return ids[int(np.argmax(np.where(wins, medium, -np.inf)))]

    def _locate_dominant(self) -> None:
        ids = list(self._queues)
        self._dominant_row = ids.index(self._dominant) if self._dominant in self._queues else -1

    def _row_added(self) -> None:
        self._ring = np.vstack([self._ring, np.full((1, _SLOTS), _EMPTY_CELL)])
        self._head = np.append(self._head, np.iinfo(np.int64).min // 2)
        self._floor = np.append(self._floor, _UNKNOWN_FLOOR)
        self._learnt = np.append(self._learnt, _UNKNOWN_FLOOR)
        self._quietest = np.append(self._quietest, _UNKNOWN_FLOOR)
        self._newest.append((0, -math.inf))
        self._floors.append(_UNKNOWN_FLOOR)

    def _row_removed(self, row: int) -> None:
        self._ring = np.delete(self._ring, row, axis=0)
        self._head = np.delete(self._head, row)
        self._floor = np.delete(self._floor, row)
        self._learnt = np.delete(self._learnt, row)
        self._quietest = np.delete(self._quietest, row)
        del self._newest[row]
        del self._floors[row]
        self._locate_dominant()
