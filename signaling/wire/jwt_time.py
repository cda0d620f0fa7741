"""The time claims of every JWT Podium reads (access, admin and webhook tokens), checked once.

One clock-skew allowance for all of them, applied the same way to ``exp``,
``nbf`` and ``iat``; PyJWT's own time checks are switched off wherever a
token is decoded, so no claim is checked twice with two different leeways.
A time that is not a finite number of seconds between the epoch and 2100 is
refused outright: it is a bug or an attack, never a real expiry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jwt.types import Options

CLOCK_SKEW = 10.0
"""Seconds two honest clocks may disagree by."""
LATEST = 4_102_444_800.0  # 2100-01-01T00:00:00Z
TIME_CLAIMS = ("exp", "nbf", "iat")


def pyjwt_options(required: list[str]) -> Options:
    """``jwt.decode`` options: claims ``required``, no time checks (``check_times``'s job)."""
    return {"require": required, "verify_exp": False, "verify_nbf": False, "verify_iat": False}


class TimeClaimError(ValueError):
    """A time claim refused; ``expired`` tells an honest late token from a bad one."""

    def __init__(self, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def check_times(claims: Mapping[str, Any], now: float, leeway: float = CLOCK_SKEW) -> None:
    """Raise ``TimeClaimError`` unless every time claim present is sane and ``now`` is inside."""
    for name in TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TimeClaimError(f"{name} must be a number of seconds")
        if not (math.isfinite(value) and 0 <= value <= LATEST):
            raise TimeClaimError(f"{name} is not a plausible time")
    if "exp" in claims and claims["exp"] + leeway <= now:
        raise TimeClaimError("token expired", expired=True)
    if "nbf" in claims and claims["nbf"] - leeway > now:
        raise TimeClaimError("token not valid yet (clock skew?)")
    if "iat" in claims and claims["iat"] - leeway > now:
        raise TimeClaimError("token issued in the future (clock skew?)")
