"""The asyncio side of ``signaling.room.clock.Clock``: what rooms run on inside the server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class LoopClock:
    """Wall-clock time, loop timers, and deferred work kept referenced until done."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def time(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)

    def spawn(self, work: Callable[[], Awaitable[None]]) -> None:
        asyncio.get_running_loop().call_soon(self._start, work)

    def _start(self, work: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(work())
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("deferred room work failed", exc_info=task.exception())
