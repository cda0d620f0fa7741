"""Cheap counters for the packet path and readers of aiortc's RTCP statistics.

The metrics layer (``signaling.metrics``) reads these at scrape time; nothing
here formats or exports anything, so the media adapter stays free of any
monitoring library and pays only a list increment per observation.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.rtcrtpreceiver import StreamStatistics

FORWARD_BUCKETS: tuple[float, ...] = (
    10e-6,
    25e-6,
    50e-6,
    100e-6,
    250e-6,
    500e-6,
    1e-3,
    2.5e-3,
    5e-3,
    10e-3,
    25e-3,
    50e-3,
    100e-3,
)
"""Seconds; one inbound packet's fan-out ranges from a few µs (one target) to ms (hundreds)."""


class DurationHistogram:
    """Fixed-bucket histogram without locks or labels: ~0.3 µs per observation.

    ``counts[i]`` holds the observations ``<= bounds[i]`` and above the previous
    bound; the last entry holds those above every bound (Prometheus ``+Inf``).
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = FORWARD_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass(frozen=True, slots=True)
class DownlinkReport:
    """What one subscriber's receiver report said about one of our slot streams."""

    fraction_lost: float
    """Share of packets lost in the report's interval (0..1)."""
    jitter_s: float
    rtt_s: float | None
    """None until a report answers a sender report we sent (``MediaPeer.send_sender_reports``)."""


def uplink_streams(pc: RTCPeerConnection) -> list[StreamStatistics]:
    """Statistics of the streams this peer sends us (fed by ``tracks.tap_receiver``)."""
    streams: list[StreamStatistics] = []
    for transceiver in pc.getTransceivers():
        remote = getattr(transceiver.receiver, "_RTCRtpReceiver__remote_streams", None)
        if remote:
            streams.extend(remote.values())
    return streams
