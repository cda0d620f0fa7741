"""Prometheus metrics: every documented metric is exposed and agrees with what clients got."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from signaling.client.client import PodiumClient
from signaling.client.tracks import ToneTrack
from signaling.server.server import PodiumServer
from tests.conftest import LOOPBACK, eventually, make_config, token
from tests.rooms import media_of

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def documented_metrics() -> set[str]:
    """Metric names in the reference table of docs/operations.md (first column)."""
    text = OPERATIONS.read_text()
    return set(re.findall(r"^\| `(podium_[a-z0-9_]+)`", text, flags=re.MULTILINE))


async def scrape(url: str) -> tuple[set[str], Samples]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    names: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
            names.add(s.name)
    return names, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
async def metrics_server() -> AsyncIterator[PodiumServer]:
    srv = PodiumServer(make_config(metrics_port=0))
    await srv.start()
    yield srv
    await srv.stop()


async def test_scrape_matches_listeners_and_lists_every_documented_metric(
    metrics_server: PodiumServer,
) -> None:
    server = metrics_server
    received = [0, 0, 0]

    def counter(i: int) -> Any:
        def on_packet(slot: int, packet: Any) -> None:
            received[i] += 1

        return on_packet

    speaker = await PodiumClient.connect(
        server.url, token("spk", "speaker"), publish=ToneTrack(440.0), host_addresses=LOOPBACK
    )
    listeners = [
        await PodiumClient.connect(
            server.url, token(f"l{i}"), on_packet=counter(i), host_addresses=LOOPBACK
        )
        for i in range(3)
    ]
    try:
        for client in (speaker, *listeners):
            await client.wait_connected()
        await eventually(lambda: all(n > 60 for n in received), timeout=15.0)

        main_url = f"http://127.0.0.1:{server.port}/metrics"
        names, samples = await scrape(main_url)
        documented = documented_metrics()
        assert len(documented) >= 20, "the reference table in docs/operations.md went missing"
        assert documented - names == set()
        assert value(samples, "podium_rooms") == 1
        assert value(samples, "podium_participants", role="speaker") == 1
        assert value(samples, "podium_participants", role="listener") == 3
        assert value(samples, "podium_producers") == 1
        assert value(samples, "podium_consumers") == 4 * 3
        assert value(samples, "podium_peer_connections", state="connected") == 4
        assert value(samples, "podium_signaling_messages_total", type="join") == 4
        assert value(samples, "podium_join_duration_seconds_count") == 4
        assert value(samples, "podium_packets_in_total") > 60
        assert value(samples, "podium_forward_duration_seconds_count") > 60
        assert value(samples, "podium_process_resident_memory_bytes") > 10e6
        # Bounded labels: nothing names a participant or a room.
        for _, labels in samples:
            for _, label in labels:
                assert label not in {"spk", "l0", "l1", "l2", "room1"}

        # The separate metrics port serves the same registry and the health checks.
        assert server.metrics.port is not None and server.metrics.port != server.port
        names2, _ = await scrape(f"http://127.0.0.1:{server.metrics.port}/metrics")
        assert documented - names2 == set()

        await speaker.close()  # stop the audio, let the listeners drain, compare totals
        previous = -1
        while sum(received) != previous:
            previous = sum(received)
            await asyncio.sleep(0.3)
        _, samples = await scrape(main_url)
        out = value(samples, "podium_packets_out_total")
        assert out > 150
        assert abs(out - sum(received)) <= max(2, 0.01 * out), (out, received)
        payload_out = value(samples, "podium_payload_bytes_out_total")
        assert payload_out > out * 10  # Opus payload bytes, headers excluded

    finally:
        for client in listeners:
            await client.close()
        await speaker.close()

    # The room closes (empty_timeout=0): totals survive it and gauges fall back to zero.
    await eventually(lambda: not server.rooms)
    _, after = await scrape(main_url)
    assert value(after, "podium_packets_out_total") >= out
    assert value(after, "podium_rooms") == 0
    assert value(after, "podium_participants", role="listener") == 0


async def test_rtcp_loss_jitter_and_rtt_are_reported(metrics_server: PodiumServer) -> None:
    server = metrics_server
    url = f"http://127.0.0.1:{server.port}/metrics"
    clients = [
        await PodiumClient.connect(
            server.url, token("spk", "speaker"), publish=ToneTrack(440.0), host_addresses=LOOPBACK
        ),
        await PodiumClient.connect(
            server.url, token("l0"), on_packet=lambda s, p: None, host_addresses=LOOPBACK
        ),
    ]
    try:
        for client in clients:
            await client.wait_connected()
        samples: Samples = {}

        async def reported() -> bool:
            nonlocal samples
            _, samples = await scrape(url)
            return (
                value(samples, "podium_rtcp_streams", direction="downlink") >= 1
                and value(samples, "podium_downlink_rtt_seconds", stat="max") > 0
            )

        for _ in range(40):  # receiver reports come every ~1 s, RTT after our first SR
            if await reported():
                break
            await asyncio.sleep(0.25)
        assert value(samples, "podium_rtcp_streams", direction="uplink") == 1
        assert value(samples, "podium_uplink_loss_ratio", stat="max") == 0.0
        assert 0 <= value(samples, "podium_uplink_jitter_seconds", stat="mean") < 0.05
        assert value(samples, "podium_downlink_loss_ratio", stat="max") == 0.0
        assert 0 < value(samples, "podium_downlink_rtt_seconds", stat="max") < 0.5
    finally:
        for client in clients:
            await client.close()


async def test_signaling_counts_health_and_readiness(metrics_server: PodiumServer) -> None:
    server = metrics_server
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
        async with http.ws_connect(server.url) as ws:
            for message in (
                {"id": 1, "type": "ping"},
                {"id": 2, "type": "no_such_request"},
                {"id": 3, "type": "offer", "data": {"sdp": "x"}},
                "{not json",
            ):
                await ws.send_str(message if isinstance(message, str) else json.dumps(message))
                await ws.receive()
        server.count_error("a_code_nobody_documented")
        _, samples = await scrape(f"{base}/metrics")
        assert value(samples, "podium_signaling_messages_total", type="ping") == 1
        assert value(samples, "podium_signaling_messages_total", type="offer") == 1
        assert value(samples, "podium_signaling_errors_total", code="unknown_type") == 1
        assert value(samples, "podium_signaling_errors_total", code="not_joined") == 1
        assert value(samples, "podium_signaling_errors_total", code="malformed_json") == 1
        assert value(samples, "podium_signaling_errors_total", code="other") == 1
        for reason in ("not_allowed", "muted", "not_selected", "no_route", "send_error"):
            assert value(samples, "podium_packets_dropped_total", reason=reason) == 0
        assert value(samples, "podium_event_loop_lag_seconds_count") >= 0

        await server.metrics.stop()  # the first step of server.stop(): shutdown has begun
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 503 and (await r.json())["ready"] is False


async def test_counters_survive_closed_rooms_and_are_never_counted_twice(
    metrics_server: PodiumServer,
) -> None:
    server, metrics = metrics_server, metrics_server.metrics
    room = server.room("gone")
    media_of(room).stats["packets_out"] += 5
    media_of(room).room.dropped["muted"] += 2
    assert metrics.totals().counters["packets_out"] == 5
    del server.rooms["gone"]  # closing: a scrape folds it into the totals ...
    assert metrics.totals().counters["packets_out"] == 5
    metrics.room_closed(room)  # ... and the late hook must not add it again
    totals = metrics.totals()
    assert totals.counters["packets_out"] == 5 and totals.dropped["muted"] == 2
    never_scraped = server.room("brief")
    media_of(never_scraped).stats["packets_out"] += 3
    del server.rooms["brief"]
    metrics.room_closed(never_scraped)  # lived and closed between two scrapes
    assert metrics.totals().counters["packets_out"] == 8
    await room.close("test")
    await never_scraped.close("test")
