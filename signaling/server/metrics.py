"""Prometheus metrics, ``/metrics``, ``/healthz`` and ``/readyz`` for one server.

Most figures already exist as plain counters in the rooms (``MediaRoom.stats``,
``sfu.room.Room.dropped``, each room's forwarding-time histogram, aiortc's RTCP
statistics); a custom collector reads them at scrape time, so the packet path
pays nothing for Prometheus.  Each server has its own registry (several servers
in one process do not collide).  Counters stay monotonic across closed rooms:
a closed room's final counts are folded into server-wide totals.

Labels are bounded by construction: roles, drop reasons, peer-connection
states, request types and error codes come from fixed sets (anything else is
``other``); nothing is labelled per room or per participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from sfu.stats import FORWARD_BUCKETS, DropReason, DurationHistogram, MediaStats, UplinkSample
from signaling.room.roles import Role
from signaling.server.context import ServerContext
from signaling.server.session import HANDLER_TYPES
from signaling.wire.errors import ErrorCode

if TYPE_CHECKING:
    from signaling.room.room import Room

logger = logging.getLogger(__name__)

DROP_REASONS = tuple(str(reason) for reason in DropReason)
PEER_STATES = ("new", "connecting", "connected", "disconnected", "failed", "closed")
REQUEST_TYPES = tuple(sorted(HANDLER_TYPES))
ERROR_CODES = tuple(sorted(str(code) for code in ErrorCode))
OTHER = "other"
STATS = ("mean", "p95", "max")
"""How per-stream RTCP figures are summarised: one series per statistic, never per stream."""

JOIN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_INTERVAL = 0.1
"""The lag probe sleeps this long and records how late it wakes up."""

COUNTERS = ("packets_in", "bytes_in", "packets_out", "bytes_out", "red_recovered", "ice_restarts")


@dataclass(eq=False)
class _RoomCounters:
    """A room's live counter objects: kept (not the room) so its final counts survive it."""

    stats: Mapping[str, int]
    dropped: Mapping[str, int]
    forward_time: DurationHistogram


@dataclass(eq=False)
class _Totals:
    counters: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    forward_counts: list[int] = field(default_factory=lambda: [0] * (len(FORWARD_BUCKETS) + 1))
    forward_sum: float = 0.0

    def add(self, room: _RoomCounters) -> None:
        self.counters.update({k: room.stats.get(k, 0) for k in COUNTERS})
        self.dropped.update(room.dropped)
        for i, n in enumerate(room.forward_time.counts):
            self.forward_counts[i] += n
        self.forward_sum += room.forward_time.total


class ServerMetrics:
    """The server's registry, its probes and the HTTP endpoints that expose them."""

    def __init__(self, server: ServerContext) -> None:
        self.server = server
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(namespace="podium", registry=self.registry)
        self.join_time = Histogram(
            "podium_join_duration_seconds",
            "Join request received until the answer to the client's offer is sent",
            buckets=JOIN_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "podium_event_loop_lag_seconds",
            f"How late a {LAG_INTERVAL:g} s sleep on the server's event loop wakes up",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.requests: Counter[str] = Counter()
        self.versions = {"version": _version("podium-sfu")} | {
            p: _version(p) for p in ("aiortc", "aioice", "av")
        }
        self.ready = False
        self._joins: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()
        self._rooms: dict[int, _RoomCounters] = {}  # by id(stats): held, so never reused
        self._retired = _Totals()
        self._folded: weakref.WeakValueDictionary[int, Mapping[str, int]] = (
            weakref.WeakValueDictionary()
        )  # rooms already in _retired, so a late room_closed cannot count one twice
        self._uplink_prior: weakref.WeakKeyDictionary[object, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._lag_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        """The separate metrics port once started (``config.metrics_port``), else None."""
        self.registry.register(_Collector(self))

    # -- HTTP --------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/metrics", self._metrics),
            web.get("/readyz", self._readyz),
        ]

    def install(self, app: web.Application) -> None:
        """Add ``/metrics`` and ``/readyz`` to the server's main application."""
        app.add_routes(self.routes())

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _readyz(self, request: web.Request) -> web.Response:
        """Ready once started and until shutdown begins: take the node out of rotation then."""
        status = 200 if self.ready else 503
        return web.json_response({"ready": self.ready}, status=status)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "rooms": len(self.server.rooms)})

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        self._lag_task = asyncio.create_task(self._probe_lag())
        port = self.server.config.metrics_port
        if port is not None:
            app = web.Application()
            app.add_routes([*self.routes(), web.get("/healthz", self._healthz)])
            self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, self.server.config.host, port).start()
            self.port = self._runner.addresses[0][1] if port == 0 else port
            logger.info("metrics on http://%s:%s/metrics", self.server.config.host, self.port)
        self.ready = True

    async def stop(self) -> None:
        """Not ready any more (shutdown is draining); the metrics port closes."""
        self.ready = False
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _probe_lag(self) -> None:
        while True:  # time.monotonic: uvloop's loop.time() has millisecond resolution
            before = time.monotonic()
            await asyncio.sleep(LAG_INTERVAL)
            self.loop_lag.observe(max(0.0, time.monotonic() - before - LAG_INTERVAL))

    # -- hooks (session and server) ------------------------------------------
    def request_started(self, session: object, kind: str) -> None:
        self.requests[kind] += 1
        if kind == "join":
            self._joins[session] = time.perf_counter()

    def request_done(self, session: object, kind: str) -> None:
        if kind == "offer":
            started = self._joins.pop(session, None)
            if started is not None:
                self.join_time.observe(time.perf_counter() - started)

    def room_closed(self, room: Room) -> None:
        """Fold a closing room's counts into the totals (it may never have been scraped)."""
        self._track(room.media.get_stats())

    # -- reading -------------------------------------------------------------
    def _track(self, stats: MediaStats) -> None:
        key = id(stats.counters)
        if key in self._rooms or self._folded.get(key) is stats.counters:
            return
        self._rooms[key] = _RoomCounters(stats.counters, stats.dropped, stats.forward_time)

    def totals(self, rooms: list[MediaStats] | None = None) -> _Totals:
        """Counters over every room this server ever had, open or closed.

        ``rooms``: the open rooms' stats, when the caller has just read them."""
        if rooms is None:
            rooms = [room.media.get_stats() for room in self.server.rooms.values()]
        live = {id(stats.counters) for stats in rooms}
        for stats in rooms:
            self._track(stats)
        for key in [k for k in self._rooms if k not in live]:
            closed = self._rooms.pop(key)
            self._retired.add(closed)  # closed: its counts are final
            self._folded[key] = closed.stats
        totals = _Totals()
        totals.counters.update(self._retired.counters)
        totals.dropped.update(self._retired.dropped)
        totals.forward_counts = list(self._retired.forward_counts)
        totals.forward_sum = self._retired.forward_sum
        for known in self._rooms.values():
            totals.add(known)
        return totals

    def uplink_loss(self, stream: UplinkSample) -> float:
        """Share of the stream's packets lost since the previous scrape (or since it began)."""
        expected, received = stream.packets_expected, stream.packets_received
        prior_expected, prior_received = self._uplink_prior.get(stream.key, (0, 0))
        self._uplink_prior[stream.key] = (expected, received)
        interval = expected - prior_expected
        if interval <= 0:
            return 0.0
        return max(0.0, (interval - (received - prior_received)) / interval)


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {stat: math.nan for stat in STATS}
    ordered = sorted(values)
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return {"mean": sum(ordered) / len(ordered), "p95": ordered[rank - 1], "max": ordered[-1]}


def _bounded(counts: Iterable[tuple[str, int]], known: tuple[str, ...]) -> dict[str, int]:
    result = dict.fromkeys((*known, OTHER), 0)
    for key, n in counts:
        result[key if key in result else OTHER] += n
    return result


class _Collector(Collector):
    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except Exception:  # a scrape must never take the server down with it
            logger.exception("metrics collection failed")

    def _collect(self) -> Iterator[Metric]:
        m = self.metrics
        rooms = list(m.server.rooms.values())

        info = InfoMetricFamily("podium_build", "Podium and media-stack versions")
        info.add_metric([], m.versions)
        yield info

        yield GaugeMetricFamily("podium_rooms", "Open rooms", value=len(rooms))
        roles: Counter[str] = Counter()
        producers = consumers = 0
        states: Counter[str] = Counter()
        uplink_loss: list[float] = []
        uplink_jitter: list[float] = []
        down_loss: list[float] = []
        down_jitter: list[float] = []
        down_rtt: list[float] = []
        media = [room.media.get_stats() for room in rooms]
        for room in rooms:
            for pid in room.participants:
                if pid in room.stage:
                    roles[str(room.stage.member(pid).role)] += 1
        for stats in media:
            producers += stats.producers
            consumers += stats.consumers
            states.update(stats.peer_states)
            for stream in stats.uplinks:
                uplink_loss.append(m.uplink_loss(stream))
                uplink_jitter.append(stream.jitter_s)
            for report in stats.downlinks:
                down_loss.append(report.fraction_lost)
                down_jitter.append(report.jitter_s)
                if report.rtt_s is not None:
                    down_rtt.append(report.rtt_s)

        gauge = GaugeMetricFamily(
            "podium_participants", "Connected participants by role", labels=["role"]
        )
        for role in Role:
            gauge.add_metric([str(role)], roles.get(str(role), 0))
        yield gauge
        yield GaugeMetricFamily(
            "podium_producers",
            "Participants allowed to publish whose peer connection has an uplink",
            value=producers,
        )
        yield GaugeMetricFamily(
            "podium_consumers", "Receive slots negotiated by subscribers", value=consumers
        )
        gauge = GaugeMetricFamily(
            "podium_peer_connections", "Server-side peer connections by state", labels=["state"]
        )
        for state, n in _bounded(states.items(), PEER_STATES).items():
            gauge.add_metric([state], n)
        yield gauge

        totals = m.totals(media)
        if m.server.udp is not None:  # batched sends fail after the fan-out counted them
            totals.dropped[DropReason.SEND_ERROR] += m.server.udp.send_errors
        for name, key, doc in (
            ("podium_packets_in", "packets_in", "RTP packets received from publishers"),
            ("podium_packets_out", "packets_out", "RTP packets forwarded to subscribers"),
            ("podium_payload_bytes_in", "bytes_in", "Opus payload bytes received (no headers)"),
            ("podium_payload_bytes_out", "bytes_out", "Opus payload bytes forwarded (no headers)"),
            (
                "podium_red_recovered_frames",
                "red_recovered",
                "Frames lost on a RED uplink and taken from the next packet's redundancy",
            ),
            (
                "podium_ice_restarts",
                "ice_restarts",
                "ICE restarts answered on a live peer connection (DTLS and slots kept)",
            ),
        ):
            yield CounterMetricFamily(name, doc, value=totals.counters.get(key, 0))
        counter = CounterMetricFamily(
            "podium_packets_dropped",
            "Inbound packets not forwarded (send_error: per subscriber)",
            labels=["reason"],
        )
        for reason, n in _bounded(totals.dropped.items(), DROP_REASONS).items():
            counter.add_metric([reason], n)
        yield counter
        cumulative, buckets = 0, []
        for bound, n in zip((*FORWARD_BUCKETS, math.inf), totals.forward_counts, strict=True):
            cumulative += n
            buckets.append((_le(bound), float(cumulative)))
        yield HistogramMetricFamily(
            "podium_forward_duration_seconds",
            "Wall time of one inbound packet's fan-out (rewrite, protect, send to every slot)",
            buckets=buckets,
            sum_value=totals.forward_sum,
        )

        if m.server.udp is not None:
            counter = CounterMetricFamily(
                "podium_udp_datagrams_dropped",
                "Datagrams on the shared media port dropped before reaching a connection",
                labels=["reason"],
            )
            udp = m.server.udp.stats
            for reason, key in UDP_DROPS.items():
                counter.add_metric([reason], udp.get(key, 0))
            yield counter
        counter = CounterMetricFamily(
            "podium_signaling_messages", "Signaling requests received, by type", labels=["type"]
        )
        for kind, n in _bounded(m.requests.items(), REQUEST_TYPES).items():
            counter.add_metric([kind], n)
        yield counter
        counter = CounterMetricFamily(
            "podium_signaling_errors", "Signaling error replies, by code", labels=["code"]
        )
        for code, n in _bounded(m.server.errors.items(), ERROR_CODES).items():
            counter.add_metric([code], n)
        yield counter

        for name, doc, values in (
            (
                "podium_uplink_loss_ratio",
                "Publishers' packet loss seen by the server since the previous scrape",
                uplink_loss,
            ),
            (
                "podium_uplink_jitter_seconds",
                "Publishers' interarrival jitter (RFC 3550) seen by the server",
                uplink_jitter,
            ),
            (
                "podium_downlink_loss_ratio",
                "Subscribers' packet loss from their RTCP receiver reports (last interval)",
                down_loss,
            ),
            (
                "podium_downlink_jitter_seconds",
                "Subscribers' interarrival jitter from their RTCP receiver reports",
                down_jitter,
            ),
            (
                "podium_downlink_rtt_seconds",
                "Round-trip time to subscribers from their reports of our sender reports",
                down_rtt,
            ),
        ):
            gauge = GaugeMetricFamily(name, doc + ", over streams", labels=["stat"])
            for stat, value in _summary(values).items():
                gauge.add_metric([stat], value)
            yield gauge
        streams = GaugeMetricFamily(
            "podium_rtcp_streams", "Streams the RTCP gauges summarise", labels=["direction"]
        )
        streams.add_metric(["uplink"], len(uplink_loss))
        streams.add_metric(["downlink"], len(down_loss))
        yield streams


UDP_DROPS = {
    "unknown": "unknown_datagrams",  # from an address no connection has claimed
    "unauthenticated": "unauthenticated_checks",  # a check whose MESSAGE-INTEGRITY failed
    "malformed": "malformed_datagrams",  # broke a parser
    "queue_full": "queue_full",  # its connection is not reading (ICE or DTLS not up)
}


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
