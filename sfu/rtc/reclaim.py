"""Give a closed peer connection's memory back: a full cyclic-GC pass now and then.

A closed aiortc peer connection is not freed by reference counting: its
objects form cycles (the DTLS transport's event emitter holds bound methods
of the peer connection, a receiver's cancelled task holds a traceback whose
frame holds the receiver, aioice's connection and protocol hold each other),
and those cycles keep its OpenSSL connection, SRTP sessions and jitter
buffers alive.  A peer that lived for minutes sits in the oldest generation,
which the server's GC tuning (``signaling.server.cli.tune_gc``: thresholds
20 000/20/20, for the per-packet path) collects once in 8 million net
allocations: in practice never.  Measured (docs/benchmarks.md, "Soak"): RSS
grew ~16 KB per join/offer/leave cycle without end; with a full collection
every 50 cycles it stays flat.

So every closed peer counts, and once the closed ones since the last pass
reach a quarter of the live ones (at least ``MINIMUM``) a full collection
runs, soon after, on the event loop.  Its cost grows with the live heap, and
so does the number of closes between two passes: constant per close, as
CPython's own rule for its oldest generation; but each pass stalls the loop
(17-40 ms with 60 listeners: docs/operations.md).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

MINIMUM = 16  # closed peers before a pass, however few are live
RATIO = 0.25  # ... or this share of the live ones, when that is more


_malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc's; musl has none


def collect_and_trim() -> int:
    """A full collection, then the freed heap pages back to the system (glibc)."""
    found = gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    return found


class PeerReclaimer:
    """Counts peer connections opened and closed; collects cycles when enough closed."""

    def __init__(self, collect: Callable[[], int] = collect_and_trim) -> None:
        self._collect = collect
        self.live = 0
        self.pending = 0  # closed since the last pass
        self.passes = 0
        self._scheduled = False

    def opened(self) -> None:
        self.live += 1

    def closed(self) -> None:
        self.live -= 1
        self.pending += 1
        if self.pending >= max(MINIMUM, RATIO * self.live) and not self._scheduled:
            self._scheduled = True
            # Not inline: the closing code still holds the peer; after it returns, nothing does.
            asyncio.get_running_loop().call_soon(self.collect)

    def collect(self) -> None:
        self._scheduled = False
        self.pending = 0
        started = time.perf_counter()
        found = self._collect()
        self.passes += 1
        logger.debug(
            "collected %d objects in %.1f ms (%d peers live)",
            found,
            1000 * (time.perf_counter() - started),
            self.live,
        )


reclaimer = PeerReclaimer()
"""The process's: garbage collection is process-wide, so is its count of peers."""
