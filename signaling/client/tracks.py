"""Audio sources for bots, probes and load tests: a paced tone that can follow a talk script."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from sfu.rtp import FRAME_SAMPLES, OPUS_CLOCK_RATE


class ToneTrack(MediaStreamTrack):
    """A paced, phase-continuous sine, as a microphone delivers it (for bots, tests, load).

    ``talk`` optionally says when to sound, as (start, end) seconds after
    ``epoch`` (a ``time.monotonic()`` value; silent until one is set), so
    several tracks can follow one script; inside those spans the tone is cut
    into ~200 ms syllables with quieter gaps, as speech looks to a level
    detector.
    """

    kind = "audio"

    def __init__(
        self,
        frequency: float,
        amplitude: float = 0.3,
        talk: tuple[tuple[float, float], ...] | None = None,
    ) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self.talk = talk
        self.epoch: float | None = None
        self.started: float | None = None
        self._pts = 0

    def _gain(self, at: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | float:
        """Gain at each sample time ``at`` (sample-exact, so a sound can be 10 ms long)."""
        if self.talk is None:
            return 1.0
        if self.epoch is None:
            return 0.0
        t = at - self.epoch
        inside = np.zeros(t.shape, dtype=bool)
        for start, end in self.talk:
            inside |= (start <= t) & (t < end)
        return inside * np.where((t * 5) % 1.0 < 0.7, 1.0, 0.05)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.started is None:
            self.started = time.monotonic()
        t0 = self._pts / OPUS_CLOCK_RATE
        delay = self.started + t0 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(FRAME_SAMPLES) + self._pts) / OPUS_CLOCK_RATE
        gain = self.amplitude * self._gain(self.started + t) * 32767
        samples = (gain * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = OPUS_CLOCK_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, OPUS_CLOCK_RATE)
        self._pts += FRAME_SAMPLES
        return frame
