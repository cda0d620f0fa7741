"""What ``podium serve`` logs: one line per join, leave, room and shutdown, in text or JSON.

``--log-format json`` writes one JSON object per line (``time``, ``level``, ``logger``,
``message``, and for the structured lines an ``event`` with its fields: ``room``,
``participant``, ``role``, ``reason`` ...) for a log pipeline to index.  Health and
metrics scrapes (every few seconds, from a load balancer and Prometheus) are left out
of the access log; every other request is in it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_log import AccessLogger

from signaling.room.room import RoomObserver
from signaling.room.stage import Joined, StageEvent

if TYPE_CHECKING:
    from signaling.room.participant import Participant
    from signaling.room.room import Room

SCRAPED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
LOG_FORMATS = ("text", "json")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

logger = logging.getLogger("signaling.events")


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra={...}`` fields become keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _RECORD_FIELDS)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(log_format: str = "text") -> None:
    """Root logging for ``podium serve`` (INFO; aioice's per-check chatter left out)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # aioice logs every ICE check's state change at INFO: a line per pair per join.
    logging.getLogger("aioice").setLevel(logging.WARNING)


class QuietAccessLogger(AccessLogger):
    """aiohttp's access log without the health and metrics scrapes."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path not in SCRAPED_PATHS:
            super().log(request, response, time)


class LogObserver(RoomObserver):
    """Logs rooms opening and closing and every join and departure (structured)."""

    def room_started(self, room: Room) -> None:
        logger.info(
            "room %s started", room.name, extra={"event": "room_started", "room": room.name}
        )

    def stage_event(self, room: Room, event: StageEvent, now: float) -> None:
        if isinstance(event, Joined):
            who, role = event.participant, str(event.role)
            logger.info(
                "%s joined room %s as %s",
                who,
                room.name,
                role,
                extra={
                    "event": "participant_joined",
                    "room": room.name,
                    "participant": who,
                    "role": role,
                },
            )

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        logger.info(
            "%s left room %s (%s)",
            participant.id,
            room.name,
            reason,
            extra={
                "event": "participant_left",
                "room": room.name,
                "participant": participant.id,
                "reason": reason,
            },
        )

    def room_finished(self, room: Room, reason: str) -> None:
        logger.info(
            "room %s closed (%s)",
            room.name,
            reason,
            extra={"event": "room_finished", "room": room.name, "reason": reason},
        )


class Observers(RoomObserver):
    """Several observers, each told everything in turn (webhooks and the log)."""

    def __init__(self, *observers: RoomObserver) -> None:
        self.observers = observers

    def room_started(self, room: Room) -> None:
        for observer in self.observers:
            observer.room_started(room)

    def stage_event(self, room: Room, event: StageEvent, now: float) -> None:
        for observer in self.observers:
            observer.stage_event(room, event, now)

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        for observer in self.observers:
            observer.participant_left(room, participant, reason)

    def room_finished(self, room: Room, reason: str) -> None:
        for observer in self.observers:
            observer.room_finished(room, reason)


def shutdown(rooms: int, participants: int) -> None:
    logger.info(
        "shutting down: closing %d rooms with %d participants",
        rooms,
        participants,
        extra={"event": "shutdown", "rooms": rooms, "participants": participants},
    )
