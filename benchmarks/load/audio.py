"""What publishers send: pre-encoded Opus cycles and talk patterns with their levels."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from sfu.rtp import FRAME_SAMPLES

SAMPLE_RATE = 48_000
CYCLE = 250  # frames per pre-encoded cycle (5 s): latencies up to 5 s are unambiguous
LOUD, QUIET = 0, 1  # which of a publisher's two cycles


@dataclass(frozen=True)
class Cycles:
    """Every publisher's loud and quiet cycles: payloads and their RFC 6464 levels."""

    payloads: tuple[tuple[bytes, ...], ...]  # [publisher * 2 + LOUD|QUIET][frame]
    levels: tuple[tuple[int, ...], ...]

    def ids(self) -> dict[bytes, int]:
        """Payload → shared-memory slot; payloads that occur twice are left out (ambiguous)."""
        seen: Counter[bytes] = Counter(p for cycle in self.payloads for p in cycle)
        return {
            payload: c * CYCLE + i
            for c, cycle in enumerate(self.payloads)
            for i, payload in enumerate(cycle)
            if seen[payload] == 1
        }


def encode_cycles(publishers: int, seed: int = 1) -> Cycles:
    """Speech-like loud frames (a gliding tone in noise, syllable envelope) and quiet noise."""
    import numpy as np

    from sfu.levels import pcm_level
    from sfu.rtc.mixing import MixEncoder

    rng = np.random.default_rng(seed)
    payloads: list[tuple[bytes, ...]] = []
    levels: list[tuple[int, ...]] = []
    n = CYCLE * FRAME_SAMPLES
    t = np.arange(n) / SAMPLE_RATE
    for p in range(publishers):
        for kind in (LOUD, QUIET):
            noise = rng.standard_normal(n)
            if kind == LOUD:
                f0 = 140.0 + 15.0 * p % 120
                pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
                voice = np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE)
                envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + p)
                signal_ = 0.25 * envelope * voice + 0.02 * noise
            else:
                signal_ = 0.0008 * noise
            pcm = (np.clip(signal_, -1, 1) * 32767).astype(np.int16)
            encoder = MixEncoder(32_000)
            frames = pcm.reshape(-1, FRAME_SAMPLES)
            # A few extra frames flush the encoder's lookahead.
            encoded = (encoder.encode(frames[i % len(frames)]) for i in range(len(frames) + 4))
            out = [packet for packet in encoded if packet is not None]
            payloads.append(tuple(out[:CYCLE]))
            levels.append(tuple(pcm_level(f) for f in frames))
    return Cycles(tuple(payloads), tuple(levels))


def talk_spans(
    pattern: str, index: int, speakers: int, horizon: float, rng: random.Random
) -> list[tuple[float, float]]:
    """When publisher ``index`` of ``speakers`` in a room talks, in seconds after the epoch."""
    if pattern == "constant":
        return [(0.0, math.inf)]
    spans: list[tuple[float, float]] = []
    if pattern == "turns":  # round robin, 4 s turns overlapping by 0.3 s
        turn = 4.0
        start = index * turn
        while start < horizon:
            spans.append((start, start + turn + 0.3))
            start += turn * speakers
        return spans
    # "random": talk spurts of ~2 s between pauses that grow with the number of speakers
    t = rng.uniform(0.0, 2.0)
    while t < horizon:
        length = rng.expovariate(1 / 2.0) + 0.3
        spans.append((t, t + length))
        t += length + rng.expovariate(1 / (1.0 + 1.5 * (speakers - 1)))
    return spans
