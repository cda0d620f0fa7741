"""Server settings (frozen; built once from the command line or by embedding code)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sfu.config import MediaConfig
from signaling.room.settings import RoomSettings
from signaling.server.cluster.config import ClusterConfig
from signaling.server.turn import IceServer as IceServer  # embedding code builds these
from signaling.wire.protocol import MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class WebhookConfig:
    """Where room events are POSTed, and how hard delivery tries (see signaling.server.webhooks)."""

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
    (see signaling.room.resume); 0 releases it at once, as a leave."""
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
    tls_cert: str | None = None
    """PEM certificate (chain) for https/wss on ``port``; plain http/ws when unset."""
    tls_key: str | None = None
    """PEM private key of ``tls_cert``."""
    cluster: ClusterConfig | None = None
    """Cluster mode (``--redis``): rooms span every node of the cluster (docs/cluster.md)."""
    serve_demo: bool = False
    """Serve the demo page and the ``/dev/token`` endpoint (``--dev`` only: anyone may mint)."""
