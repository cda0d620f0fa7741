"""Decode-once level fallback for producers whose packets carry no audio level."""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import numpy.typing as npt


class PcmDecoder:
    """One Opus decoder per such producer (never on the forwarding path's behalf)."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("opus", "r")
        self._codec.sample_rate = 48_000
        self._codec.layout = "mono"

    def decode(self, payload: bytes) -> npt.NDArray[Any] | None:
        try:
            frames = self._codec.decode(av.Packet(payload))
        except av.error.FFmpegError:  # a corrupt packet: no level from it
            return None
        if not frames:
            return None
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
