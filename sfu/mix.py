"""Mixing arithmetic, pure numpy: sum in float32, mix-minus by subtraction, a limiter, int16 out.

Voices are summed in float32 (full scale 1.0), where nothing can wrap around.
Mix-minus is the total less one voice, so every distinct mix costs one
subtraction, not a sum of its own.  The limiter keeps each mix under a
ceiling with a slowly varying gain instead of clipping it: a clipped sum
splatters harmonics across the spectrum, a gain that drops within 2 ms and
recovers over ~100 ms only makes the mix briefly quieter.  A soft knee
catches the few samples of an attack's first 2 ms, so the output never
exceeds full scale whatever comes in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sfu.rtp import OPUS_CLOCK_RATE

Pcm = npt.NDArray[np.float32]
Pcm16 = npt.NDArray[np.int16]

INT16_FULL_SCALE = 32767


def mix(frames: Sequence[Pcm], length: int) -> Pcm:
    """The sum of ``frames`` (each ``length`` samples); silence when there are none."""
    total = np.zeros(length, dtype=np.float32)
    for frame in frames:
        total += frame
    return total


def mix_minus(total: Pcm, own: Pcm | None) -> Pcm:
    """``total`` without one voice (a fresh array: the total is shared by every mix)."""
    return total - own if own is not None else total.copy()


def to_int16(samples: Pcm) -> Pcm16:
    """Float (full scale 1.0) to int16, saturating rather than wrapping around."""
    scaled = np.clip(samples * INT16_FULL_SCALE, -INT16_FULL_SCALE, INT16_FULL_SCALE)
    return np.rint(scaled).astype(np.int16)


class Limiter:
    """A peak limiter for one mix, frame by frame (no look-ahead: it adds no latency)."""

    def __init__(
        self,
        ceiling: float = 10 ** (-1 / 20),  # -1 dBFS: headroom for the codec's overshoot
        attack: float = 0.002,
        release: float = 0.1,
        sample_rate: int = OPUS_CLOCK_RATE,
    ) -> None:
        self.ceiling = ceiling
        self.gain = 1.0
        self._attack = max(1, round(attack * sample_rate))
        self._release = release
        self._sample_rate = sample_rate

    def process(self, samples: Pcm) -> Pcm:
        """``samples`` scaled in place under the ceiling; peaks never exceed 1.0."""
        n = len(samples)
        if n == 0:
            return samples
        peak = float(np.max(np.abs(samples)))
        target = 1.0 if peak <= self.ceiling else self.ceiling / peak
        start = self.gain
        if target < start:  # attack: down to the target within a couple of ms
            ramp = np.full(n, target, dtype=np.float32)
            length = min(self._attack, n)
            ramp[:length] = np.linspace(start, target, length, endpoint=False, dtype=np.float32)
            samples *= ramp
            self.gain = target
        elif start < 1.0:  # release: back towards the target, exponentially
            end = target - (target - start) * math.exp(-n / self._sample_rate / self._release)
            samples *= np.linspace(start, end, n, dtype=np.float32)
            self.gain = end if end < 0.9999 else 1.0
        return self._soft_knee(samples)

    def _soft_knee(self, samples: Pcm) -> Pcm:
        """Above the ceiling, bend samples smoothly into (ceiling, 1.0) instead of clipping."""
        over = np.abs(samples) > self.ceiling
        if over.any():
            c = self.ceiling
            x = samples[over]
            bent = c + (1.0 - c) * np.tanh((np.abs(x) - c) / (1.0 - c))
            samples[over] = np.copysign(bent, x).astype(np.float32)
        return samples
