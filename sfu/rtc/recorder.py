"""The room's mix as an Ogg/Opus file: the mix's own Opus packets, muxed as sent (no re-encode)."""

from __future__ import annotations

import fractions
from pathlib import Path

import av

from sfu.rtp import FRAME_SAMPLES, OPUS_CLOCK_RATE

_TIME_BASE = fractions.Fraction(1, OPUS_CLOCK_RATE)


class OggRecorder:
    """One recording.  Its file name is claimed at once (so a bad directory fails the
    request); the Opus stream starts with the first packet, whose encoder's header it needs.

    Ogg pages are written as they fill (about once a second), so a crash loses at
    most the last second; ``close`` writes the rest and the end-of-stream page.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=False)
        self.path = path
        self._container = av.open(str(path), "w", format="ogg")
        self._stream: av.audio.stream.AudioStream | None = None
        self._first_tick = 0
        self._last_tick: int | None = None

    @property
    def duration(self) -> float:
        """Seconds of audio written so far."""
        if self._last_tick is None:
            return 0.0
        return (self._last_tick - self._first_tick + 1) * FRAME_SAMPLES / OPUS_CLOCK_RATE

    def write(self, payload: bytes, tick: int, opus_head: bytes) -> None:
        """The mix's packet of 20 ms tick ``tick``.

        Ticks the clock skipped (a stalled event loop) are filled with packets
        that are only a TOC byte, which decoders conceal: the file's timeline
        stays the wall clock's.
        """
        if self._stream is None:
            stream = self._container.add_stream("libopus", rate=OPUS_CLOCK_RATE)
            stream.codec_context.layout = "mono"
            stream.codec_context.extradata = opus_head
            stream.time_base = _TIME_BASE
            self._stream, self._first_tick = stream, tick
        elif self._last_tick is not None and payload:
            filler = bytes([payload[0] & 0xFC])  # same mode, one frame, no data
            for missed in range(self._last_tick + 1, tick):
                self._mux(self._stream, filler, missed)
        self._mux(self._stream, payload, tick)

    def _mux(self, stream: av.audio.stream.AudioStream, payload: bytes, tick: int) -> None:
        packet = av.Packet(payload)
        packet.stream = stream
        packet.pts = packet.dts = (tick - self._first_tick) * FRAME_SAMPLES
        packet.duration = FRAME_SAMPLES
        packet.time_base = _TIME_BASE
        self._container.mux(packet)
        self._last_tick = tick

    def close(self) -> float:
        """Finish the file (remove it if nothing was recorded); returns its duration in seconds."""
        self._container.close()
        if self._stream is None:
            self.path.unlink(missing_ok=True)
        return self.duration
