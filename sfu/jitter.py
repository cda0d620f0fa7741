"""One speaker's jitter buffer for the mixer: packets in, one 20 ms window of audio out per tick.

Sans-I/O.  The mixer pops every buffer once per 20 ms tick.  A talk spurt
starts playing once its first packet is ``delay`` old, so packets reordered or
jittered by less than that still make their turn; from then on the playout
position advances with the RTP timestamps, one window per tick:

* the next packet (by sequence number) is due: it is played (``Packet``);
* it is missing while a later one is here: it is lost, concealed (``Lost``:
  the decoder's PLC) and dropped if it turns up later;
* nothing is here: its time is concealed, but its number stays expected (the
  sender may just have paused); after ``max_conceal`` such frames the spurt
  ends, and the next packet starts a new one;
* sequence numbers run on but timestamps jump (the sender's DTX): the gap is
  ``Silence``; so is the time after a DTX packet until the next one.

Latency only ever grows when packets arrive in a burst (after a stall, or a
sender clock running fast); it is brought back by skipping the oldest audio:
at once when more than ``max_delay`` piles up, else once a second by as many
whole frames as the promptest packet of that second waited beyond ``delay``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sfu.rtp import FRAME_SAMPLES, OPUS_CLOCK_RATE

_MAX_PACKETS = 100  # 2 s of 20 ms packets: more means nobody pops this buffer
_ADAPT_PACKETS = 50  # packets played (about 1 s) over which excess latency is judged
_RESET_JUMP = 3000  # sequence jumps beyond this are a restarted stream, not loss
_DTX_BYTES = 2  # an Opus packet this small carries no audio (DTX, or a TOC only)


@dataclass(frozen=True, slots=True)
class Packet:
    """Decode this packet; it covers ``samples``."""

    payload: bytes
    samples: int


@dataclass(frozen=True, slots=True)
class Lost:
    """A packet is missing: conceal ``samples`` (Opus PLC)."""

    samples: int


@dataclass(frozen=True, slots=True)
class Silence:
    """The sender sent nothing for ``samples`` on purpose (DTX): no audio."""

    samples: int


Unit = Packet | Lost | Silence

# Samples per Opus frame by TOC configuration (RFC 6716, 3.1): SILK 10/20/40/60 ms,
# hybrid 10/20 ms, CELT 2.5/5/10/20 ms, at 48 kHz.
_TOC_SAMPLES = (480, 960, 1920, 2880) * 3 + (480, 960) * 2 + (120, 240, 480, 960) * 4


def opus_samples(payload: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples, from its TOC; 0 if malformed."""
    if not payload:
        return 0
    toc = payload[0]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(payload) < 2:
        return 0
    else:
        frames = payload[1] & 0x3F
    return frames * _TOC_SAMPLES[toc >> 3]


def _extend(value: int, reference: int, bits: int) -> int:
    """``value`` (``bits`` wide, wrapping) unwrapped to the integer closest to ``reference``."""
    half = 1 << (bits - 1)
    delta = ((value - reference + half) & ((1 << bits) - 1)) - half
    return reference + delta


class JitterBuffer:
    def __init__(
        self,
        delay: float = 0.02,
        max_delay: float = 0.2,
        max_conceal: int = 3,
        clock_rate: int = OPUS_CLOCK_RATE,
    ) -> None:
        self.delay = delay
        self.max_conceal = max_conceal
        self._max_depth = round(max_delay * clock_rate)
        self._clock_rate = clock_rate
        self._delay_samples = round(delay * clock_rate)
        self.stats: Counter[str] = Counter()
        # Extended (unwrapped) sequence number → (extended timestamp, payload, arrival).
        self._packets: dict[int, tuple[int, bytes, float]] = {}
        self._ref: tuple[int, int] | None = None  # (extended seq, extended ts) of the newest
        self._playing = False
        self._next_seq = 0  # the packet due next (valid once _ref is set)
        self._window = 0  # start of the next window to hand out
        self._played_to = 0  # timestamp up to which units have been handed out
        self._last_samples = FRAME_SAMPLES
        self._concealed = 0
        self._dtx = False
        self._min_wait = float("inf")  # least time a played packet waited, this second
        self._waits = 0

    @property
    def playing(self) -> bool:
        return self._playing

    def push(self, sequence_number: int, timestamp: int, payload: bytes, now: float) -> None:
        """One packet as it arrived (any order, duplicates welcome)."""
        if self._ref is None:
            seq, ts = sequence_number, timestamp
            self._next_seq = seq
        else:
            ref_seq, ref_ts = self._ref
            seq = _extend(sequence_number, ref_seq, 16)
            ts = _extend(timestamp, ref_ts + (seq - ref_seq) * self._last_samples, 32)
            if abs(seq - ref_seq) > _RESET_JUMP:  # a new stream: forget the old one
                self.stats["resets"] += 1
                self._packets.clear()
                self._playing = False
                self._next_seq = seq
                self._ref = None
        self.stats["received"] += 1
        if seq < self._next_seq:
            self.stats["late"] += 1  # its turn has passed (played, concealed or skipped)
            return
        if seq in self._packets:
            self.stats["duplicate"] += 1
            return
        if self._ref is not None and seq < self._ref[0]:
            self.stats["reordered"] += 1
        if self._ref is None or seq > self._ref[0]:
            self._ref = (seq, ts)
        self._packets[seq] = (ts, payload, now)
        if len(self._packets) > _MAX_PACKETS:
            del self._packets[min(self._packets)]
            self.stats["overflow"] += 1

    def pop(self, now: float) -> tuple[Unit, ...]:
        """The audio of the next 20 ms window; empty when the speaker is not playing."""
        if not self._playing and not self._start(now):
            return ()
        window_end = self._window + FRAME_SAMPLES
        units: list[Unit] = []
        while self._playing and self._played_to < window_end:
            unit = self._next(window_end, now)
            if unit is not None:
                units.append(unit)
        self._window = window_end
        if self._playing:
            self._bound_latency()
        return tuple(units)

    def _start(self, now: float) -> bool:
        if not self._packets:
            return False
        first = min(self._packets)
        ts, _, arrival = self._packets[first]
        if now - arrival < self.delay:
            return False
        self._playing = True
        self._next_seq = first
        self._window = self._played_to = ts
        self._concealed = 0
        self._dtx = False
        return True

    def _next(self, window_end: int, now: float) -> Unit | None:
        """The unit at the playout position; None when it only skipped or ended the spurt."""
        entry = self._packets.get(self._next_seq)
        if entry is not None:
            ts, payload, arrival = entry
            if ts > self._played_to:  # sequence runs on, time jumped: the sender paused
                return self._silence(min(ts, window_end))
            del self._packets[self._next_seq]
            self._next_seq += 1
            if ts < self._played_to:  # overlaps audio already handed out
                self.stats["overlap"] += 1
                return None
            samples = opus_samples(payload) or FRAME_SAMPLES
            self._played_to = ts + samples
            self._last_samples = samples
            self._concealed = 0
            self._dtx = len(payload) <= _DTX_BYTES
            self._min_wait = min(self._min_wait, now - arrival)
            self._waits += 1
            self.stats["played"] += 1
            return Packet(payload, samples)
        if self._packets:  # a later packet is here: this one is lost, or too late anyway
            self._next_seq += 1
            self.stats["lost"] += 1
        elif self._dtx:
            return self._silence(window_end)
        elif self._concealed >= self.max_conceal:
            self._playing = False  # the spurt is over (or the sender is gone)
            return None
        else:  # late or lost, or the sender paused: keep its number, conceal its time
            self._concealed += 1
        self._played_to += self._last_samples
        self.stats["concealed"] += 1
        return Lost(self._last_samples)

    def _silence(self, until: int) -> Silence:
        gap = until - self._played_to
        self._played_to = until
        return Silence(gap)

    def _bound_latency(self) -> None:
        """Skip the oldest audio when more is buffered than jitter needs (see the docstring)."""
        if self._ref is None or not self._packets:
            return
        skip_to = None
        if self._waits >= _ADAPT_PACKETS:
            # Play whole frames earlier while the promptest packet still waits `delay`.
            frames = int((self._min_wait - self.delay) * self._clock_rate / self._last_samples)
            if frames > 0:
                skip_to = self._played_to + frames * self._last_samples
            self._min_wait, self._waits = float("inf"), 0
        newest_seq, newest_ts = self._ref
        if newest_ts - self._played_to > self._max_depth:
            skip_to = newest_ts - self._delay_samples
        if skip_to is None:
            return
        for seq in sorted(self._packets):
            ts = self._packets[seq][0]
            if ts >= skip_to or seq == newest_seq:
                self._next_seq = seq
                self._window = self._played_to = ts
                break
            del self._packets[seq]
            self.stats["skipped"] += 1
        self.stats["resyncs"] += 1
