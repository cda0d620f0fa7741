"""What the media path counts, as plain values the layers above read at scrape time.

Nothing here formats or exports anything, so the media core stays free of any
monitoring library and pays only a list increment per observation.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class DropReason(StrEnum):
    """Why a packet was not forwarded (``Room.dropped`` keys, the metrics' ``reason`` label)."""

    NO_ROUTE = "no_route"
    """From a participant the room does not know (left while the packet was in flight)."""
    NOT_ALLOWED = "not_allowed"
    """From a participant whose role may not publish."""
    MUTED = "muted"
    NOT_SELECTED = "not_selected"
    """Silent, or not among the speakers the slots carry."""
    SEND_ERROR = "send_error"
    """Per subscriber: its transport refused the datagram."""
    BAD_RED = "bad_red"
    """A RED (RFC 2198) packet whose block headers do not add up."""


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


@dataclass(frozen=True, slots=True)
class UplinkSample:
    """One inbound stream's RTCP receiver statistics, read at one instant."""

    key: object
    """Stable for the stream's lifetime: loss since the previous read is keyed by it."""
    packets_expected: int
    packets_received: int
    jitter_s: float


@dataclass(frozen=True, slots=True)
class MediaStats:
    """A media room's counters (live views: a closed room's stay readable) and samples."""

    counters: Mapping[str, int]
    """packets/bytes in and out, decoded frames, ... since the room opened."""
    dropped: Mapping[str, int]
    """Packets not forwarded, by reason (``sfu.room.Room.dropped``)."""
    forward_time: DurationHistogram
    producers: int
    """Participants allowed to publish whose peer connection has an uplink."""
    consumers: int
    peer_states: tuple[str, ...]
    uplinks: tuple[UplinkSample, ...]
    downlinks: tuple[DownlinkReport, ...]
