"""What a speaker's encoder is told its audience loses (sans-I/O).

The server's receiver reports on a speaker's uplink carry, as their fraction
lost, the larger of the uplink's own loss and a high percentile of the loss
its listeners report on the slot streams carrying that speaker.  libwebrtc
feeds that figure to its Opus encoder as the expected packet loss, which is
what turns on (and sizes) Opus in-band FEC under ``useinbandfec=1``.

A percentile rather than the worst listener: one listener on a terrible link
must not make everyone pay for its FEC; the cap keeps the encoder from
spending most of its bitrate on redundancy (libopus's FEC gains little above
it anyway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

AUDIENCE_PERCENTILE = 90.0
MAX_REPORTED_LOSS = 0.2


def audience_loss(
    losses: Sequence[float],
    percentile: float = AUDIENCE_PERCENTILE,
    cap: float = MAX_REPORTED_LOSS,
) -> float:
    """The loss (0..``cap``) to report to a speaker whose listeners report ``losses`` (0..1)."""
    if not losses:
        return 0.0
    ordered = sorted(losses)
    rank = max(1, math.ceil(percentile / 100.0 * len(ordered)))  # nearest rank
    return min(cap, max(0.0, ordered[rank - 1]))


def fraction_lost_byte(own: int, audience: float) -> int:
    """An RTCP fraction-lost byte (of 256): the uplink's own, or the audience's if larger."""
    return max(own, min(255, round(audience * 256)))
