"""Opus decoding to float PCM: the level fallback, and the mixer's per-speaker decoder."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt


class PcmDecoder:
    """One Opus decoder per producer, mono float32 out (never on the forwarding path).

    libopus rather than FFmpeg's native decoder: it conceals a lost packet
    (PLC) when handed a packet that is only a TOC byte, as RFC 6716 specifies
    for zero-length frames.
    """

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.sample_rate = 48_000
        self._codec.layout = "mono"
        self._codec.options = {"request_sample_fmt": "flt"}
        self._toc: int | None = None

    def decode(self, payload: bytes) -> npt.NDArray[np.float32] | None:
        samples = self._decode(payload)
        if samples is not None:
            self._toc = payload[0]
        return samples

    def conceal(self) -> npt.NDArray[np.float32] | None:
        """Audio in place of one lost packet, as long as the last one decoded (None before any)."""
        if self._toc is None:
            return None
        return self._decode(bytes([self._toc & 0xFC]))  # same mode, one frame, no data

    def _decode(self, payload: bytes) -> npt.NDArray[np.float32] | None:
        if not payload:  # an empty packet would put FFmpeg's decoder into draining mode
            return None
        try:
            frames = self._codec.decode(av.Packet(payload))
        except av.error.FFmpegError:  # a corrupt packet: nothing from it
            return None
        if not frames:
            return None
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
