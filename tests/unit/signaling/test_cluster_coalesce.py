"""A node's outgoing messages: a broadcast to many clients of one edge is one message."""

from __future__ import annotations

from typing import Any

from signaling.server.cluster.node import coalesce


def msg(conn: str, text: str) -> dict[str, Any]:
    return {"t": "msg", "conn": conn, "text": text}


def test_a_broadcast_is_one_message_per_node_and_every_order_is_kept() -> None:
    batch = [
        ("B", msg("b1", "E1")),
        ("C", msg("c1", "E1")),
        ("B", msg("b2", "E1")),
        ("B", {"t": "media", "op": "leave", "pid": "b3"}),
        ("B", msg("b3", "E1")),
        ("C", msg("c2", "E1")),
        ("B", msg("b1", "E2")),
        ("B", msg("b2", "E2")),
        ("B", msg("b1", "E3")),
    ]
    assert coalesce(batch) == [
        ("B", {"t": "msg", "conns": ["b1", "b2"], "text": "E1"}),
        ("C", {"t": "msg", "conns": ["c1", "c2"], "text": "E1"}),
        ("B", {"t": "media", "op": "leave", "pid": "b3"}),  # not overtaken by a merge
        ("B", {"t": "msg", "conns": ["b3"], "text": "E1"}),
        ("B", {"t": "msg", "conns": ["b1", "b2"], "text": "E2"}),
        ("B", {"t": "msg", "conns": ["b1"], "text": "E3"}),
    ]
