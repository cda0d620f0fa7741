"""Server settings (frozen; built once from the command line or by embedding code)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sfu.config import MediaConfig
from signaling.attendees import AttendeeConfig
from signaling.chat import ChatConfig
from signaling.protocol import MAX_MESSAGE_BYTES
from signaling.stage import StageConfig


@dataclass(frozen=True)
class IceServer:
    """An ICE server handed to clients (``stun:``/``turn:`` URLs)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            data["username"] = self.username
        if self.credential is not None:
            data["credential"] = self.credential
        return data


@dataclass(frozen=True)
class RoomSettings:
    """Defaults for every room (the server API will let rooms override them)."""

    stage: StageConfig = field(default_factory=StageConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    attendees: AttendeeConfig = field(default_factory=AttendeeConfig)
    empty_timeout: float = 30.0
    """Seconds an empty room lives on (its bans with it) before it is closed."""
    media_mode: str = "forward"
    """How audio reaches listeners: ``forward`` (SFU), ``mix`` or ``auto`` (sfu.mixer.MediaMode)."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """The platform's own data about a room made through the server API."""


@dataclass(frozen=True)
class WebhookConfig:
    """Where room events are POSTed, and how hard delivery tries (see signaling.webhooks)."""

    urls: tuple[str, ...] = ()
    api_key: str | None = None
    """Which of ``api_keys`` signs deliveries; the first one when unset."""
    queue_size: int = 10_000
    """Events waiting per URL, all rooms together; further events are dropped and counted."""
    max_attempts: int = 20
    """Tries of one event before it is given up (and counted): about 13 minutes of retries."""
    backoff_initial: float = 0.5
    backoff_max: float = 60.0
    request_timeout: float = 5.0
    concurrency: int = 8
    """Requests in flight per URL; each room still has at most one, so rooms stay ordered."""
    drain_timeout: float = 5.0
    """At shutdown, how long pending events may take to go out before they are abandoned."""


@dataclass(frozen=True)
class ServerConfig:
    api_keys: Mapping[str, str]
    """API key → secret; tokens name their key in ``iss``."""
    host: str = "127.0.0.1"
    port: int = 7880
    media: MediaConfig = field(default_factory=MediaConfig)
    room: RoomSettings = field(default_factory=RoomSettings)
    ice_servers: tuple[IceServer, ...] = ()
    """Handed to clients in the join response; none by default (no public STUN)."""
    keepalive_interval: float = 5.0
    """WebSocket ping period; a client silent for 1.5 periods is dropped."""
    resume_window: float = 30.0
    """How long a participant's seat is held after its WebSocket or media path is lost
    (see signaling.resume); 0 releases it at once, as a leave."""
    join_timeout: float = 10.0
    """A WebSocket that has not joined a room this long after opening is closed."""
    header_timeout: float = 10.0
    """An HTTP connection whose request headers are not complete this long after it opened
    (or after its previous response) is closed: idle and slow-loris sockets alike."""
    max_connections_per_address: int = 1000
    """Open HTTP/WebSocket connections one source address may hold; more are closed at once.
    Generous: many people may share one NAT."""
    max_message_bytes: int = MAX_MESSAGE_BYTES
    """Larger frames get a ``message_too_large`` error; the session goes on."""
    max_frame_bytes: int = 1024 * 1024
    """Larger frames close the WebSocket (1009): the server will not buffer them."""
    outbox_limit: int = 512
    """Queued outbound messages per client before it is dropped as too slow."""
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    recordings_dir: str | None = None
    """Where ``start_recording`` writes Ogg/Opus files; recording is refused when unset."""
    metrics_port: int | None = None
    """Also serve ``/metrics`` (and the health checks) on this port; 0 picks a free one."""
    serve_demo: bool = False
    """Serve the demo page and the ``/dev/token`` endpoint (``--dev`` only: anyone may mint)."""
