"""Real audio for tests: tone tracks to publish, FFT checks on what is received."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

SAMPLE_RATE = 48_000
FRAME = 960  # 20 ms


class ToneTrack(MediaStreamTrack):
    """A paced sine tone (phase-continuous), as a microphone would deliver it."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._pts / SAMPLE_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(FRAME) + self._pts) / SAMPLE_RATE
        samples = (self.amplitude * 32767 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += FRAME
        return frame


def to_mono(frame: av.AudioFrame) -> np.ndarray:
    data = frame.to_ndarray().astype(np.float32) / 32768.0
    channels = len(frame.layout.channels)
    return data.reshape(-1, channels).mean(axis=1) if channels > 1 else data.reshape(-1)


async def record(track: MediaStreamTrack, seconds: float) -> np.ndarray:
    """Decode ``seconds`` of audio from ``track`` (empty if nothing arrives)."""
    chunks: list[np.ndarray] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            frame = await asyncio.wait_for(track.recv(), remaining)
        except (TimeoutError, MediaStreamError):
            break
        chunks.append(to_mono(frame))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def tone_level_db(samples: np.ndarray, frequency: float, bandwidth: float = 20.0) -> float:
    """Energy (dBFS-ish) of ``samples`` within ±bandwidth Hz of ``frequency``."""
    if len(samples) < FRAME:
        return -200.0
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    band = (freqs > frequency - bandwidth) & (freqs < frequency + bandwidth)
    energy = spectrum[band].sum() / (window**2).sum() / len(samples)
    return float(10 * np.log10(energy + 1e-20))


def dominant_frequency(samples: np.ndarray) -> float:
    if len(samples) < FRAME:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    spectrum[freqs < 50] = 0
    return float(freqs[int(np.argmax(spectrum))])
