"""Every Redis key and channel a Podium cluster uses (docs/cluster.md describes each)."""

from __future__ import annotations

PREFIX = "podium"
NODES = f"{PREFIX}:nodes"
"""ZSET node id → time of its last heartbeat (Unix seconds); pruned past the node TTL."""


def node(node_id: str) -> str:
    """HASH of one node's registration (id, url, media, relay, relay_key, load...); TTL."""
    return f"{PREFIX}:node:{node_id}"


def inbox(node_id: str) -> str:
    """Pub/sub channel of one node: requests, replies, events and media commands for it."""
    return f"{PREFIX}:node:{node_id}:inbox"


def state(room: str) -> str:
    """STRING (JSON) of ``room``'s durable state (``Room.state``), written by its origin after
    every change; TTL refreshed by the origin's heartbeat, deleted when the room closes."""
    return f"{PREFIX}:room:{room}:state"


def origin(room: str) -> str:
    """STRING: the id of the node that is ``room``'s origin; TTL refreshed by its heartbeat."""
    return f"{PREFIX}:room:{room}:origin"
