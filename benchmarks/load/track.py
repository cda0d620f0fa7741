"""The publishers' track: pre-encoded frames paced like a microphone, send times recorded."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

from benchmarks.common import (
    Message,
)
from benchmarks.load.audio import CYCLE, LOUD, QUIET, SAMPLE_RATE
from sfu.rtp import FRAME_SAMPLES, PTIME


def _cycle_track_class() -> type:
    from aiortc import MediaStreamTrack

    class _CycleTrack(MediaStreamTrack):
        """Pre-encoded Opus at 50 packets/s, each send time written to the shared table."""

        kind = "audio"

        def __init__(self, spec: Message, epoch: float, table: Any) -> None:
            import av

            super().__init__()
            self._av = av
            self.payloads: list[list[bytes]] = spec["payloads"]
            self.levels: list[list[int]] = spec["levels"]
            self.base = int(spec["table_base"])
            self.spans: list[tuple[float, float]] = [tuple(s) for s in spec["spans"]]
            self.epoch = epoch
            self.table = table
            self.level = 127
            self.sent = 0
            self.max_lag = 0.0
            self.quiet = False
            self._n = 0
            self._time_base = fractions.Fraction(1, SAMPLE_RATE)

        def _talking(self, t: float) -> bool:
            return any(a <= t < b for a, b in self.spans)

        async def recv(self) -> Any:
            while True:
                due = self.epoch + self._n * PTIME
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.2:  # far behind (a stall): skip, as a live source would
                    self._n = int((time.monotonic() - self.epoch) / PTIME)
                    continue
                if not self.quiet:
                    break
                self._n += 1  # quiet: stop sending, keep the clock
            n, self._n = self._n, self._n + 1
            kind = LOUD if self._talking(n * PTIME) else QUIET
            i = n % CYCLE
            payload = self.payloads[kind][i]
            self.level = self.levels[kind][i]
            now = time.monotonic()
            self.max_lag = max(self.max_lag, now - due)
            self.table[self.base + kind * CYCLE + i] = now
            self.sent += 1
            packet = self._av.Packet(payload)
            packet.pts = n * FRAME_SAMPLES
            packet.time_base = self._time_base
            return packet

    return _CycleTrack


def CycleTrack(spec: Message, epoch: float, table: Any) -> Any:
    """A track of pre-encoded packets (aiortc imported only inside worker processes)."""
    global _CYCLE_TRACK
    if _CYCLE_TRACK is None:
        _CYCLE_TRACK = _cycle_track_class()
    return _CYCLE_TRACK(spec, epoch, table)


_CYCLE_TRACK: type | None = None


def send_levels(client: Any, track: Any) -> None:
    """Put each packet's RFC 6464 level in its header, as browsers do.

    aiortc computes a level only for frames it encodes itself; for pre-encoded
    packets it sends none, and the SFU would fall back to decoding every packet.
    """
    sender = client.pc.getTransceivers()[0].sender
    original = sender._next_encoded_frame

    async def next_encoded_frame(codec: Any) -> Any:
        frame = await original(codec)
        if frame is not None:
            frame.audio_level = -track.level  # aiortc writes (False, -audio_level)
        return frame

    sender._next_encoded_frame = next_encoded_frame
