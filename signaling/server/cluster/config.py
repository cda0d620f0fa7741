"""Cluster settings: where Redis is, who this node is, where its relay listens."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterConfig:
    redis_url: str
    """``redis://HOST:PORT/DB``: every node of one cluster names the same database."""
    node_id: str | None = None
    """Unique per process; drawn at start when unset (host, pid and random)."""
    relay_host: str = "127.0.0.1"
    """The address other nodes send relayed media to (the relay socket binds it)."""
    relay_port: int = 0
    signaling_url: str | None = None
    """What the registry tells clients and platforms; if unset, the bound
    ``ws://host:port/rtc`` (with ``relay_host`` for a wildcard host)."""
    heartbeat_interval: float = 1.0
    node_ttl: float = 5.0
    """A node whose heartbeat stops is forgotten after this long."""
    origin_ttl: float = 10.0
    """A room's origin claim lapses this long after its node stops refreshing it."""
    state_ttl: float = 300.0
    """A room's state in Redis outlives its origin's last heartbeat by this long."""
    state_interval: float = 0.1
    """How often an origin copies its changed rooms' state to Redis."""
    max_participants: int = 0
    """Joins beyond this many clients on this node are redirected (0: no limit)."""
    max_cpu: float = 0.0
    """Joins while this node's CPU share (of one core) is above this are redirected (0: off)."""

    def __post_init__(self) -> None:
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("the cluster's Redis is a redis://, rediss:// or unix:// URL")
        if self.heartbeat_interval * 2 > self.node_ttl:
            raise ValueError("node_ttl must cover at least two heartbeats")
