"""Prometheus series of a cluster node (scraped with the server's own, at ``/metrics``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sfu.rtc.relay import RelayEndpoint
from signaling.server.context import ServerContext

REFUSALS = ("unknown_sender", "auth_failed", "malformed")


class NodeView(Protocol):
    """What the collector reads of a ``ClusterNode``."""

    server: ServerContext
    relay: RelayEndpoint
    messages: Counter[str]
    takeovers: int
    redirects: int

    @property
    def edge_rooms(self) -> Mapping[str, Any]: ...

    def dump(self) -> dict[str, Any]: ...


class ClusterCollector(Collector):
    def __init__(self, node: NodeView) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node, relay = self.node, self.node.relay
        packets = CounterMetricFamily(
            "podium_cluster_relay_packets",
            "Relayed media packets between nodes (out: datagrams sent, one per edge)",
            labels=["direction"],
        )
        packets.add_metric(["in"], relay.stats["packets_in"])
        packets.add_metric(["out"], relay.stats["packets_out"])
        yield packets
        refused = CounterMetricFamily(
            "podium_cluster_relay_refused",
            "Relay datagrams dropped: not from a cluster node, not authenticated, not relay",
            labels=["reason"],
        )
        for reason in REFUSALS:
            refused.add_metric([reason], relay.stats[reason])
        yield refused
        cumulative, buckets = 0, []
        histogram = relay.latency
        for bound, count in zip((*histogram.bounds, math.inf), histogram.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), float(cumulative)))
        yield HistogramMetricFamily(
            "podium_cluster_relay_latency_seconds",
            "A relayed packet's sending node's clock to its arrival here (clocks in sync)",
            buckets=buckets,
            sum_value=histogram.total,
        )
        yield GaugeMetricFamily(
            "podium_cluster_relay_streams",
            "Streams this node relays (one per room and speaker)",
            value=relay.streams,
        )
        messages = CounterMetricFamily(
            "podium_cluster_messages",
            "Messages through Redis to and from other nodes (lost: a publish that failed)",
            labels=["direction"],
        )
        for direction in ("sent", "received", "lost"):
            messages.add_metric([direction], node.messages[direction])
        yield messages
        rooms = GaugeMetricFamily(
            "podium_cluster_rooms", "Rooms this node serves, by its part in them", labels=["part"]
        )
        rooms.add_metric(["origin"], len(node.server.rooms))
        rooms.add_metric(["edge"], len(node.edge_rooms))
        yield rooms
        sessions = GaugeMetricFamily(
            "podium_cluster_sessions",
            "Clients across nodes: connected here to another origin (edge), or served here"
            " for another node (remote)",
            labels=["kind"],
        )
        dump = node.dump()
        sessions.add_metric(["edge"], dump["edge_sessions"])
        sessions.add_metric(["remote"], dump["remote_sessions"])
        yield sessions
        yield CounterMetricFamily(
            "podium_cluster_origin_takeovers",
            "Rooms this node went on with from the state another node left in Redis",
            value=node.takeovers,
        )
        yield CounterMetricFamily(
            "podium_cluster_redirects",
            "Joins this node sent to another because it was full or draining",
            value=node.redirects,
        )
