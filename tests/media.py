"""Real audio for tests: FFT checks on what is received (tones come from sfu.rtc.tracks)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from signaling.client.client import PodiumClient
from signaling.client.tracks import ToneTrack

__all__ = ["Recorder", "ToneTrack", "dominant_frequency", "record", "slot_of", "tone_level_db"]

SAMPLE_RATE = 48_000
FRAME = 960  # 20 ms


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
        assert isinstance(frame, av.AudioFrame)
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


def slot_of(client: PodiumClient, identity: str) -> int | None:
    """The client's slot that the server says carries ``identity`` now."""
    return next((s.index for s in client.slots if s.participant == identity), None)


def dominant_frequency(samples: np.ndarray) -> float:
    if len(samples) < FRAME:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    spectrum[freqs < 50] = 0
    return float(freqs[int(np.argmax(spectrum))])


class Recorder:
    """Decodes a track continuously, stamping frames with their arrival time.

    aiortc queues decoded frames until they are read, so reading a track only
    now and then returns stale audio; this reads all the time instead.
    """

    def __init__(self, track: MediaStreamTrack) -> None:
        self.frames: list[tuple[float, np.ndarray]] = []
        self._task = asyncio.create_task(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                self.frames.append((time.monotonic(), to_mono(frame)))

    def between(self, start: float, end: float) -> np.ndarray:
        chunks = [samples for at, samples in self.frames if start <= at < end]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    def stop(self) -> None:
        self._task.cancel()
