"""Give a closed peer connection's memory back: break its cycles, collect what escapes.

A closed aiortc peer connection is not freed by reference counting: its
objects form cycles (the transports' event emitters hold bound methods of
the peer connection, a receiver's cancelled RTCP task holds a traceback
whose frame holds the receiver, aioice's connection, candidate pairs and
protocols hold each other, and the adapter's own per-object overrides close
over the objects they override), and those cycles keep its OpenSSL
connection and SRTP sessions alive.  The server's GC tuning
(``signaling.server.cli.tune_gc``: thresholds 20 000/20/20, for the
per-packet path) collects the oldest generation almost never, and a full
collection over thousands of peers' objects stalls the event loop for tens
to hundreds of milliseconds.

So ``unlink`` breaks those cycles once a peer connection is closed, and
reference counting frees it at once (measured: a closed listener left 399
objects to the collector; it leaves none now); the signaling layer does the
same for what a session leaves.  What escapes (a closed room's objects, a
path not measured, another library version) is still caught: the reclaimer
looks again a moment after each close, counts what is still alive then, and
once those reach a quarter of the live peers (at least ``MINIMUM``) runs one
full collection.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
import types
import weakref
from collections.abc import Callable

from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)

MINIMUM = 16  # escaped objects before a pass, however few peers are live
RATIO = 0.25  # ... or this share of the live peers, when that is more
GRACE = 1.0  # seconds after a close: the tasks that finish it may hold it until then


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
    """Counts live peer connections, and closed things still alive a moment after their
    close; collects cycles when enough escaped."""

    def __init__(self, collect: Callable[[], int] = collect_and_trim, grace: float = GRACE):
        self._collect = collect
        self._grace = grace
        self.live = 0
        self.pending = 0  # escaped since the last pass
        self.escaped = 0  # in all
        self.passes = 0

    def opened(self) -> None:
        self.live += 1

    def closed(self, pc: object) -> None:
        self.live -= 1
        self.watch(pc)

    def watch(self, closed: object) -> None:
        """``closed`` should be freed by now: look again in a moment."""
        asyncio.get_running_loop().call_later(self._grace, self._check, weakref.ref(closed))

    def _check(self, ref: weakref.ref[object]) -> None:
        if ref() is None:  # freed by reference counting
            return
        self.escaped += 1
        self.pending += 1
        if self.pending >= max(MINIMUM, RATIO * self.live):
            self.collect()

    def collect(self) -> None:
        self.pending = 0
        started = time.perf_counter()
        found = self._collect()
        self.passes += 1
        logger.info(
            "collected %d objects in %.1f ms (%d peers live)",
            found,
            1000 * (time.perf_counter() - started),
            self.live,
        )


reclaimer = PeerReclaimer()
"""The process's: garbage collection is process-wide, so is its count of peers."""
