"""One room over K cluster nodes: what the relay costs the origin and the edges.

    python -m benchmarks.cluster --nodes 3 --listeners 60 --seconds 10 --json out.json

Starts a redis-server (unless ``--redis`` names one) and K ``podium serve --redis``
processes on loopback.  One speaker (a real Opus tone) and one reference listener join
node 0, the room's origin; N listeners are spread over the other nodes.  Every client
runs in this process and counts packets without decoding.  Over the measured window:

- ``delivered_ratio``: packets the edge listeners received / (N x the reference's);
- ``origin_cpu_ms_per_s``: the origin process's CPU per second (compare N = 0 with N > 0:
  the relay sends each edge one stream whatever its audience);
- ``edge_cpu_us_per_packet``: each edge's CPU over the packets its listeners received;
- ``relay_added_latency_ms_p50/p99``: arrival of a packet (matched by its Opus payload,
  which is forwarded untouched) at an edge listener minus its arrival at the reference
  listener on the origin, both read on this process's clock.

``failover_s`` (with 3 nodes or more, and listeners): after the window, node 1 (an edge) is
killed with SIGKILL; the time until every one of its listeners, resuming through another
node by itself (the SDK's own reconnection), receives the speaker again.
``origin_cpu_ms_per_join`` / ``edge_cpu_ms_per_join``: CPU each side spent while the
edge listeners joined, one after another, per join.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from aiortc.rtp import RtpPacket

from benchmarks.common import (
    HOST,
    cpu_model,
    cpu_seconds,
    free_port,
    percentile,
    scrape,
    server_command,
    versions,
    wait_healthy,
)
from signaling.client.client import PodiumClient
from signaling.client.tracks import ToneTrack
from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
from signaling.wire.tokens import mint_token

ROOM = "bench"


class Listener:
    """Counts a listener's packets, and keeps their arrival times by payload."""

    def __init__(self, always: bool = False) -> None:
        self.arrivals: dict[bytes, list[float]] = {}
        self.packets = 0
        self.measuring = False
        self.last = 0.0  # monotonic time of the latest packet
        self._always = always  # the reference: an edge's packet may precede the window

    def __call__(self, slot: int, packet: RtpPacket) -> None:
        self.last = time.monotonic()
        if self.measuring:
            self.packets += 1
        if self.measuring or self._always:
            self.arrivals.setdefault(packet.payload, []).append(time.monotonic())

    def delays(self, reference: Listener) -> list[float]:
        """Each packet's arrival here minus its arrival at ``reference`` (a steady tone
        repeats its frames: the nearest arrival of the same bytes is the same packet)."""
        found: list[float] = []
        for payload, times in self.arrivals.items():
            theirs = reference.arrivals.get(payload)
            if theirs:
                found.extend(min((t - r for r in theirs), key=abs) for t in times)
        return found


def relay_hop_bound(metrics: dict[str, float], q: float) -> float | None:
    """The smallest histogram bucket bound under which a fraction ``q`` of relay hops fell."""
    name = "podium_cluster_relay_latency_seconds_bucket{le="
    buckets = sorted(
        (float(key[len(name) : -1]), count)
        for key, count in metrics.items()
        if key.startswith(name)
    )
    total = buckets[-1][1] if buckets else 0.0
    return next((bound for bound, count in buckets if count >= q * total), None) if total else None


async def fail_over(
    edge: subprocess.Popen[bytes], victims: list[Listener], limit: float = 30.0
) -> float | None:
    """Kill ``edge``; seconds until each of its listeners hears again (None: not in ``limit``).

    A packet counts once 50 ms have passed since the kill: nothing the dead node sent can
    still be arriving then, so it came through the node the listener resumed through.
    """
    edge.kill()
    killed = time.monotonic()
    while time.monotonic() - killed < limit:
        if all(victim.last > killed + 0.05 for victim in victims):
            return time.monotonic() - killed  # within this poll's 10 ms
        await asyncio.sleep(0.01)
    return None


def home(listener: int, nodes: int) -> int:
    """The node listener ``listener`` joins: the edges in turn (the origin if it is alone)."""
    return 1 + listener % (nodes - 1) if nodes > 1 else 0


def start_redis(log: IO[bytes], directory: str) -> tuple[str, subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("benchmarks.cluster: redis-server not found (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--dir", directory],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return f"redis://{HOST}:{port}/0", process


async def measure(args: argparse.Namespace, redis_url: str, log: IO[bytes]) -> dict[str, Any]:
    ports = [free_port() for _ in range(args.nodes)]
    nodes = []
    for i, port in enumerate(ports):
        command = server_command(
            "signaling.server.cli", port, args.slots, "--redis", redis_url,
            "--node-id", f"node-{i}", "--relay-address", HOST,
        )  # fmt: skip
        nodes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    clients: list[PodiumClient] = []
    try:
        for port, node in zip(ports, nodes, strict=True):
            await asyncio.to_thread(wait_healthy, port, node, 30.0)

        async def join(node: int, identity: str, role: str, **kw: Any) -> PodiumClient:
            token = mint_token(DEV_API_KEY, DEV_API_SECRET, identity=identity, room=ROOM, role=role)
            url = f"ws://{HOST}:{ports[node]}/rtc"
            client = await PodiumClient.connect(
                url, token, host_addresses=[HOST], tune_process=True, timeout=60, **kw
            )
            clients.append(client)
            return client

        await join(0, "speaker", "host", publish=ToneTrack(440))
        reference = Listener(always=True)
        await join(0, "reference", "listener", on_packet=reference)
        listeners = [Listener() for _ in range(args.listeners)]
        joining = [cpu_seconds(n.pid) for n in nodes]
        for i, listener in enumerate(listeners):
            await join(home(i, args.nodes), f"l{i}", "listener", on_packet=listener)
        join_cpu = [cpu_seconds(n.pid) - b for n, b in zip(nodes, joining, strict=True)]
        await asyncio.sleep(args.warmup)

        before = [cpu_seconds(n.pid) for n in nodes]
        started = time.monotonic()
        for listener in (reference, *listeners):
            listener.measuring = True
        await asyncio.sleep(args.seconds)
        for listener in (reference, *listeners):
            listener.measuring = False
        elapsed = time.monotonic() - started
        cpu = [cpu_seconds(n.pid) - b for n, b in zip(nodes, before, strict=True)]
        hops = [
            relay_hop_bound(scrape(f"http://{HOST}:{port}/metrics"), 0.99) for port in ports[1:]
        ]
        victims = [lst for i, lst in enumerate(listeners) if home(i, args.nodes) == 1]
        failover = await fail_over(nodes[1], victims) if args.nodes >= 3 and victims else None
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        for node in nodes:
            node.terminate()
        for node in nodes:
            try:
                node.wait(10)
            except subprocess.TimeoutExpired:
                node.kill()

    per_edge: dict[int, int] = {}
    for i, listener in enumerate(listeners):
        edge = home(i, args.nodes)
        per_edge[edge] = per_edge.get(edge, 0) + listener.packets
    edge_costs = [cpu[n] / count * 1e6 for n, count in per_edge.items() if count and n != 0]
    delays_ms = [d * 1000 for listener in listeners for d in listener.delays(reference)]
    expected = reference.packets * len(listeners)
    return {
        "nodes": args.nodes,
        "listeners": args.listeners,
        "seconds": round(elapsed, 2),
        "reference_packets": reference.packets,
        "delivered_ratio": round(sum(lst.packets for lst in listeners) / expected, 4)
        if expected
        else None,
        "origin_cpu_ms_per_s": round(cpu[0] / elapsed * 1000, 1),
        "edge_cpu_ms_per_s": [round(c / elapsed * 1000, 1) for c in cpu[1:]],
        "edge_cpu_us_per_packet": round(sum(edge_costs) / len(edge_costs), 1)
        if edge_costs
        else None,
        "relay_added_latency_ms_p50": round(percentile(delays_ms, 50), 2) if delays_ms else None,
        "relay_added_latency_ms_p99": round(percentile(delays_ms, 99), 2) if delays_ms else None,
        # Each edge's own histogram of the hop (origin's send to its arrival, one host's
        # clock): the relay alone, without the benchmark's client-side lag.
        "relay_hop_ms_p99_bound": [None if h is None else round(h * 1000, 2) for h in hops],
        "failover_s": round(failover, 2) if failover is not None else None,
        # Joins one after another (not a storm): what an edge listener's join costs each side.
        "origin_cpu_ms_per_join": round(join_cpu[0] / len(listeners) * 1000, 2)
        if listeners and args.nodes > 1
        else None,
        "edge_cpu_ms_per_join": round(sum(join_cpu[1:]) / len(listeners) * 1000, 2)
        if listeners and args.nodes > 1
        else None,
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    parser.add_argument("--nodes", type=int, default=3, help="cluster nodes (node 0: origin)")
    parser.add_argument("--listeners", type=int, default=20, help="listeners on the edges")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--slots", type=int, default=3)
    parser.add_argument("--redis", help="an existing redis:// URL (default: start one)")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--log", type=Path, help="the nodes' and Redis's output (default: none)")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.listeners < 0:
        parser.error("--nodes >= 1, --listeners >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with contextlib.ExitStack() as stack:
        log: IO[bytes] = stack.enter_context(
            args.log.open("wb") if args.log else open("/dev/null", "wb")  # noqa: SIM115
        )
        redis_url, redis = args.redis, None
        if redis_url is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory())
            redis_url, redis = start_redis(log, directory)
        try:
            result = asyncio.run(measure(args, redis_url, log))
        finally:
            if redis is not None:
                redis.terminate()
                redis.wait(5)
    result["command"] = "python -m benchmarks.cluster " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    result["machine"] = {"cpu": cpu_model(), "versions": versions()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
