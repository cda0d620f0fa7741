"""Per-participant token buckets for requests that make the server talk to others.

Chat messages, reactions and hand toggles each fan out to many clients (and
webhooks): one client must not be able to turn its own request rate into
everyone else's load.
"""

from __future__ import annotations

from dataclasses import dataclass

from signaling.wire.errors import ErrorCode, PodiumError


@dataclass(frozen=True, slots=True)
class Rate:
    """Token bucket: bursts of up to ``count`` requests, refilled at ``count`` per ``per`` s."""

    count: int
    per: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.per <= 0:
            raise ValueError(f"invalid rate: {self}")


class RateLimiter:
    """Per-key token buckets; forget the keys of departed participants to bound memory."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)

    def take(self, key: str, now: float) -> None:
        """Spend one token, or raise ``rate_limited`` without spending anything."""
        tokens, since = self._buckets.get(key, (float(self.rate.count), now))
        refill = max(0.0, now - since) * self.rate.count / self.rate.per
        tokens = min(float(self.rate.count), tokens + refill)
        if tokens < 1.0:
            wait = (1.0 - tokens) * self.rate.per / self.rate.count
            raise PodiumError(ErrorCode.RATE_LIMITED, f"slow down: retry in {wait:.1f} s")
        self._buckets[key] = (tokens - 1.0, now)

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)
