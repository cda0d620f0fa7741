"""Webhooks: what Podium tells the platform's backend about its rooms.

Every event is a JSON object POSTed to each configured URL with
``Content-Type: application/webhook+json``, signed as in ``webhook_verify``.
Each has a unique ``id`` (the same on every retry: receivers dedupe by it), a
``created_at`` timestamp, the room's ``name`` and ``sid`` and a per-room
``seq`` (1, 2, 3, ... from ``room_started``) so a receiver can check order.

Delivery is at-least-once and ordered per room name: a room's next event is
not sent until the previous one got a 2xx answer or was given up after
``max_attempts`` (exponential backoff from ``backoff_initial`` to
``backoff_max``). Rooms do not wait for each other. Each URL has its own
bounded queue (``queue_size`` events): when it is full a new event is dropped,
and counted in ``WebhookQueue.dropped``; receivers see the hole in ``seq``.

``WebhookQueue`` is the sans-I/O part (what to send when, given ``now``);
``_Sender`` does the HTTP for one URL; ``Webhooks`` builds events from rooms.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

from signaling.room.room import RoomObserver
from signaling.room.stage import Joined, ProfileChanged, RoomEnded, StageEvent
from signaling.server.config import ServerConfig, WebhookConfig
from signaling.server.views import attendance_info, participant_view, settings_view
from signaling.wire.messages import stage_event_message
from signaling.wire.rest import (
    WEBHOOKS,
    ParticipantInfo,
    ParticipantLeft,
    RoomFinished,
    RoomStarted,
)
from signaling.wire.webhook_verify import CONTENT_TYPE, sign_webhook

if TYPE_CHECKING:
    from signaling.room.participant import Participant
    from signaling.room.room import Room

logger = logging.getLogger(__name__)

EVENTS = tuple(WEBHOOKS)  # typed, one by one, in signaling.wire.rest
STAGE_WEBHOOKS = {
    "role_changed": "participant_role_changed",
    "muted": "participant_muted",
    "participant_removed": "participant_removed",
    "hand_raised": "hand_raised",
    "hand_lowered": "hand_lowered",
}
"""The stage events a backend is told of: WebSocket event name -> webhook name; the data
is the WebSocket event's (``stage_event_message``)."""


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    event: str
    room: str
    room_sid: str
    seq: int
    created_at: float
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "created_at": self.created_at,
            "room": {"name": self.room, "sid": self.room_sid},
            "seq": self.seq,
            "data": dict(self.data),
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Backoff:
    initial: float
    maximum: float

    def delay(self, failures: int) -> float:
        """Wait after the ``failures``-th failed attempt: initial, 2x, 4x, ... up to maximum."""
        return float(min(self.maximum, self.initial * 2 ** min(failures - 1, 62)))


@dataclass(eq=False)
class Delivery:
    """One event on its way to one URL; ``attempts`` counts the tries made so far."""

    event: WebhookEvent
    body: bytes
    attempts: int = 0


class WebhookQueue:
    """Per-room FIFO lanes for one URL: one delivery in flight per room, bounded in total.

    A room's lane is ready when its head may be tried (``due <= now``) and nothing of
    that room is in flight; ready lanes are served in the order they became ready.
    """

    def __init__(self, capacity: int, backoff: Backoff, max_attempts: int) -> None:
        if capacity < 1 or max_attempts < 1:
            raise ValueError("capacity and max_attempts must be positive")
        self.capacity = capacity
        self.backoff = backoff
        self.max_attempts = max_attempts
        self._lanes: dict[str, deque[Delivery]] = {}
        self._ready: list[tuple[float, int, str]] = []  # heap of (due, order, room)
        self._in_flight: set[str] = set()
        self._order = itertools.count()
        self.size = 0
        # Counters (metrics come later: read them off the object).
        self.enqueued = 0
        self.delivered = 0
        self.failed_attempts = 0
        self.dropped = 0
        """Events refused because the queue was full."""
        self.expired = 0
        """Events given up after ``max_attempts`` failed attempts."""

    def __len__(self) -> int:
        return self.size

    def push(self, event: WebhookEvent, body: bytes, now: float) -> bool:
        if self.size >= self.capacity:
            self.dropped += 1
            return False
        lane = self._lanes.setdefault(event.room, deque())
        lane.append(Delivery(event, body))
        self.size += 1
        self.enqueued += 1
        if len(lane) == 1 and event.room not in self._in_flight:
            heapq.heappush(self._ready, (now, next(self._order), event.room))
        return True

    def next_due(self) -> float | None:
        """When ``pop_ready`` will next have something (None: nothing is waiting)."""
        return self._ready[0][0] if self._ready else None

    def pop_ready(self, now: float) -> Delivery | None:
        if not self._ready or self._ready[0][0] > now:
            return None
        _, _, room = heapq.heappop(self._ready)
        self._in_flight.add(room)
        delivery = self._lanes[room][0]
        delivery.attempts += 1
        return delivery

    def succeeded(self, delivery: Delivery, now: float) -> None:
        self.delivered += 1
        self._finish(delivery, now)

    def failed(self, delivery: Delivery, now: float) -> float | None:
        """Schedule the retry and return when it is due; None if the event was given up."""
        self.failed_attempts += 1
        if delivery.attempts >= self.max_attempts:
            self.expired += 1
            self._finish(delivery, now)
            return None
        room = delivery.event.room
        self._in_flight.discard(room)
        due = now + self.backoff.delay(delivery.attempts)
        heapq.heappush(self._ready, (due, next(self._order), room))
        return due

    def _finish(self, delivery: Delivery, now: float) -> None:
        room = delivery.event.room
        lane = self._lanes[room]
        assert lane[0] is delivery, "only the head of a lane is ever in flight"
        lane.popleft()
        self.size -= 1
        self._in_flight.discard(room)
        if lane:
            heapq.heappush(self._ready, (now, next(self._order), room))
        else:
            del self._lanes[room]


class _Sender:
    """POSTs one URL's queue: up to ``concurrency`` requests, never two for one room."""

    def __init__(
        self, url: str, queue: WebhookQueue, config: WebhookConfig, key: str, secret: str
    ) -> None:
        self.url = url
        self.queue = queue
        self.config = config
        self._key, self._secret = key, secret
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, http: aiohttp.ClientSession) -> None:
        try:
            while True:
                self._wake.clear()
                now = time.monotonic()
                while len(self._tasks) < self.config.concurrency:
                    delivery = self.queue.pop_ready(now)
                    if delivery is None:
                        break
                    task = asyncio.create_task(self._deliver(http, delivery))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                due = self.queue.next_due()
                timeout = None if due is None else max(0.0, due - time.monotonic())
                if len(self._tasks) >= self.config.concurrency:
                    timeout = None  # a finishing delivery wakes us
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(self, http: aiohttp.ClientSession, delivery: Delivery) -> None:
        event = delivery.event
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Authorization": sign_webhook(delivery.body, self._key, self._secret),
            "X-Podium-Event": event.event,
            "X-Podium-Event-Id": event.id,
            "X-Podium-Attempt": str(delivery.attempts),
        }
        problem = ""
        try:
            timeout = aiohttp.ClientTimeout(total=self.config.request_timeout)
            async with http.post(
                self.url, data=delivery.body, headers=headers, timeout=timeout
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    problem = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if not problem:
            self.queue.succeeded(delivery, now)
        else:
            due = self.queue.failed(delivery, now)
            level = logging.WARNING if delivery.attempts == 1 or due is None else logging.DEBUG
            logger.log(
                level,
                "webhook %s %s to %s failed (attempt %d, %s): %s",
                event.event,
                event.id,
                self.url,
                delivery.attempts,
                "given up" if due is None else f"retry in {due - now:.1f} s",
                problem,
            )
        self._wake.set()


class Webhooks(RoomObserver):
    """Turns what rooms report into events, and delivers them to every configured URL."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config.webhooks
        key = self.config.api_key or next(iter(config.api_keys), "")
        if self.config.urls and key not in config.api_keys:
            raise ValueError(f"webhook api_key {key!r} is not one of the server's API keys")
        backoff = Backoff(self.config.backoff_initial, self.config.backoff_max)
        self.queues = {
            url: WebhookQueue(self.config.queue_size, backoff, self.config.max_attempts)
            for url in self.config.urls
        }
        self._senders = [
            _Sender(url, queue, self.config, key, config.api_keys.get(key, ""))
            for url, queue in self.queues.items()
        ]
        self._seq: dict[str, int] = {}  # room sid -> last seq
        self._ended_by: dict[str, str] = {}  # room sid -> who ended it
        self._http: aiohttp.ClientSession | None = None
        self._runs: list[asyncio.Task[None]] = []

    # -- counters (summed over URLs) --------------------------------------
    @property
    def dropped(self) -> int:
        return sum(q.dropped for q in self.queues.values())

    @property
    def expired(self) -> int:
        return sum(q.expired for q in self.queues.values())

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    # -- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        if not self._senders or self._http is not None:
            return
        self._http = aiohttp.ClientSession()
        self._runs = [asyncio.create_task(s.run(self._http)) for s in self._senders]

    async def close(self) -> None:
        """Give pending events up to ``drain_timeout`` to go out, then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout
        while self._runs and self.pending and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.pending:
            logger.warning("webhooks: %d events not delivered at shutdown", self.pending)
        for run in self._runs:
            run.cancel()
        for run in self._runs:
            with contextlib.suppress(asyncio.CancelledError):
                await run
        self._runs = []
        if self._http is not None:
            await self._http.close()
            self._http = None

    # -- events -------------------------------------------------------------
    def emit(self, room: Room, name: str, data: Mapping[str, Any]) -> WebhookEvent | None:
        """Queue ``name`` for every URL; None (and nothing built) when none is configured."""
        if not self.queues:
            return None
        seq = self._seq[room.sid] = self._seq.get(room.sid, 0) + 1
        event = WebhookEvent(
            id=f"EV_{uuid.uuid4().hex}",
            event=name,
            room=room.name,
            room_sid=room.sid,
            seq=seq,
            created_at=time.time(),
            data=data,
        )
        body = event.encode()
        now = time.monotonic()
        for queue, sender in zip(self.queues.values(), self._senders, strict=True):
            if queue.push(event, body, now):
                sender.wake()
            else:
                logger.warning("webhook queue for %s full: dropped %s", sender.url, event.id)
        return event

    def room_started(self, room: Room) -> None:
        started: RoomStarted = {
            "created_at": room.created_at,
            "settings": settings_view(room.settings),
            "metadata": dict(room.settings.metadata),
        }
        self.emit(room, "room_started", started)

    def stage_event(self, room: Room, event: StageEvent, now: float) -> None:
        if not self.queues:
            return
        match event:
            case Joined(participant=pid) | ProfileChanged(participant=pid):
                member = room.stage.member(pid)
                view = participant_view(room, member, room.stage.hand_queue())
                name = "participant_joined" if isinstance(event, Joined) else "participant_updated"
                info: ParticipantInfo = {"participant": view}
                self.emit(room, name, info)
            case RoomEnded(by=by):
                self._ended_by[room.sid] = by
            case _:
                message = stage_event_message(event)
                if message is not None and message[0] in STAGE_WEBHOOKS:
                    self.emit(room, STAGE_WEBHOOKS[message[0]], message[1])

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        left: ParticipantLeft = {"participant": participant.id, "reason": reason}
        self.emit(room, "participant_left", left)

    def room_finished(self, room: Room, reason: str) -> None:
        if room.sid not in self._seq:  # no URLs, or told twice
            return
        ended_by = self._ended_by.pop(room.sid, None)
        why: Literal["ended", "empty", "server_shutdown"] = "empty"
        if room.stage.ended:
            why = "ended"
        elif reason == "server_shutdown":
            why = "server_shutdown"
        finished: RoomFinished = {
            "reason": why,
            "ended_by": ended_by,
            "created_at": room.created_at,
            "duration": max(0.0, time.time() - room.created_at),
            "attendance": [attendance_info(r) for r in room.stage.attendance()],
        }
        self.emit(room, "room_finished", finished)
        self._seq.pop(room.sid, None)
