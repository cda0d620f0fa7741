"""Give a closed peer connection's memory back: break its cycles, and collect the rest.

A closed aiortc peer connection is not freed by reference counting: its
objects form cycles (the transports' event emitters hold bound methods of
the peer connection, a receiver's cancelled RTCP task holds a traceback
whose frame holds the receiver, aioice's connection, candidate pairs and
protocols hold each other, and the adapter's own per-object overrides close
over the objects they override), and those cycles keep its OpenSSL
connection and SRTP sessions alive.  ``unlink`` breaks them once the peer
connection is closed, and reference counting frees it at once (measured:
a closed listener left 399 objects to the collector; it leaves none now).

The session around it still leaves cycles (aiohttp's WebSocket response,
request and protocol hold each other), and the server's GC tuning
(``signaling.server.cli.tune_gc``: thresholds 20 000/20/20, for the
per-packet path) collects the oldest generation once in 8 million net
allocations: in practice never.  So every closed peer counts, and once the
closed ones since the last pass reach a quarter of the live ones (at least
``MINIMUM``) a full collection runs, soon after, on the event loop.  Its
cost grows with the live heap, and so does the number of closes between two
passes: constant per close, as CPython's own rule for its oldest
generation; each pass stalls the loop (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
import types
from collections.abc import Callable

from aiortc import RTCPeerConnection

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


def unlink(pc: RTCPeerConnection) -> None:
    """Break the reference cycles of ``pc``, closed, so that reference counting frees it."""
    transceivers = pc.getTransceivers()
    emitters: list[object] = [pc]
    for transceiver in transceivers:
        _drop_overrides(transceiver.receiver)
        _drop_overrides(transceiver.sender)
        # A cancelled task keeps its CancelledError, whose traceback holds the loop's frame.
        transceiver.receiver._RTCRtpReceiver__rtcp_task = None  # type: ignore[attr-defined]
    for dtls in {t.receiver.transport for t in transceivers}:  # one, when bundled
        ice = dtls.transport
        connection = ice.iceGatherer._connection
        connection._check_list.clear()  # pairs -> protocols -> connection
        connection._nominated.clear()
        _drop_overrides(dtls)
        _drop_overrides(connection)
        emitters += [dtls, ice, ice.iceGatherer]
    for emitter in emitters:
        emitter.remove_all_listeners()  # type: ignore[attr-defined]


def _drop_overrides(owner: object) -> None:
    """Remove the functions set on ``owner`` itself (the adapter's overrides of its
    methods: each closes over ``owner``); its class's methods show through again."""
    for name, value in list(vars(owner).items()):
        if isinstance(value, types.FunctionType):
            delattr(owner, name)


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
