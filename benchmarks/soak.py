"""Soak: churn against one server for minutes; does it stay flat?

    python -m benchmarks.soak --minutes 60 --json soak.json

A ``podium serve --dev`` process runs on loopback with one room: a speaker
playing a tone and a steady audience of ``--audience`` listeners (real ICE,
DTLS, SRTP; packets counted, never decoded).  All the while, every
``--interval`` seconds one action hits the room, drawn at random: a join, a
graceful leave, an abrupt disconnect (socket and peer connection dropped, no
``leave``: the server holds the seat for the resume window, then releases it),
a resume (the client's socket is closed under it and the SDK resumes), a hand
raised and lowered, a chat message.  The audience is topped up to its size.

Recorded per minute from /proc of the server process: RSS, open file
descriptors, CPU seconds; the server's own event-loop lag p99 (from its
``podium_event_loop_lag_seconds`` histogram: the upper bound of the bucket
holding the 99th percentile of that minute); and the p99 round trip of a
``ping`` sent every 100 ms on an idle socket.  Flat means RSS and fds no more than 5 %
above their level at the end of minute 5 (or of the first minute, for a run
shorter than 5 minutes).  The fds are judged by each minute's floor (sampled every
second): the count follows the audience, one socket per client, and a client or two
joining or resuming at the sampling instant is 5 % of a 20-listener room's ~37 fds;
a leak raises the floor, churn only the peaks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import random
import re
import shlex
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import (
    cpu_model,
    cpu_seconds,
    free_port,
    percentile,
    rss_mb,
    server_command,
    start_server,
    versions,
    wait_healthy,
)

ROOM = "soak"
ACTIONS = ("join", "leave", "abrupt", "resume", "hand", "chat")


def _fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _kill_socket(client: Any) -> None:
    """Drop the TCP connection under the WebSocket: no close frame, as when a network dies."""
    client.ws._response.connection.transport.abort()


def lag_buckets(url: str) -> dict[float, float]:
    """The server's cumulative event-loop lag histogram: upper bound -> count."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    pattern = r'^podium_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$'
    return {float(le): float(n) for le, n in re.findall(pattern, text, re.MULTILINE)}


def lag_p99(before: dict[float, float], after: dict[float, float]) -> float:
    """The bucket bound under which 99 % of the samples between two scrapes fall."""
    bounds = sorted(after)
    deltas = [after[b] - before.get(b, 0.0) for b in bounds]
    total = deltas[-1] if deltas else 0.0
    for bound, cumulative in zip(bounds, deltas, strict=True):
        if total and cumulative >= 0.99 * total:
            return bound
    return math.nan


class Soak:
    def __init__(self, args: argparse.Namespace, url: str, pid: int, metrics: str) -> None:
        from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
        from signaling.wire.tokens import mint_token

        self.args = args
        self.url = url
        self.pid = pid
        self.metrics = metrics
        self.rng = random.Random(args.seed)
        self.listeners: dict[str, Any] = {}
        self.ids = 0
        self.actions: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.packets = 0
        self.rtts: list[float] = []
        self.fd_samples: list[int] = []
        self._mint = functools.partial(mint_token, DEV_API_KEY, DEV_API_SECRET, room=ROOM)

    def token(self, identity: str, role: str = "listener") -> str:
        return self._mint(identity=identity, role=role)

    async def connect(self, identity: str, role: str = "listener", **kw: Any) -> Any:
        from signaling.client.client import PodiumClient

        def count(_slot: int, _packet: Any) -> None:
            self.packets += 1

        return await PodiumClient.connect(
            self.url, self.token(identity, role), host_addresses=["127.0.0.1"],
            on_packet=count, **kw,
        )  # fmt: skip

    async def join(self) -> None:
        self.ids += 1
        identity = f"l{self.ids}"
        client = await self.connect(identity)
        self.listeners[identity] = client

    def _pick(self) -> tuple[str, Any] | None:
        if not self.listeners:
            return None
        identity = self.rng.choice(sorted(self.listeners))
        return identity, self.listeners[identity]

    async def act(self, action: str) -> None:
        if action == "join":
            await self.join()
            return
        picked = self._pick()
        if picked is None:
            return
        identity, client = picked
        if action == "leave":
            del self.listeners[identity]
            await client.leave()
        elif action == "abrupt":  # gone without a word: the server holds the seat, then drops it
            del self.listeners[identity]
            client.heartbeat = None  # no resume: this client is gone
            _kill_socket(client)
            await client.close()
        elif action == "resume":  # the socket dies under the client; the SDK resumes
            _kill_socket(client)
        elif action == "hand":
            await client.request("raise_hand")
            await client.request("lower_hand")
        elif action == "chat":
            await client.request("send_chat", text=f"message {self.actions['chat']}")

    async def churn(self, until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(self.args.interval)
            while len(self.listeners) < self.args.audience:
                self.actions["join"] += 1
                await self._attempt("join")
            action = self.rng.choice(ACTIONS)
            self.actions[action] += 1
            await self._attempt(action)

    async def _attempt(self, action: str) -> None:
        try:
            await asyncio.wait_for(self.act(action), 15)
        except Exception as exc:  # counted: a soak reports failures, it does not stop on one
            self.failures[f"{action}: {type(exc).__name__}: {exc}"[:120]] += 1

    async def probe(self, until: float) -> None:
        """Ping round trips on a quiet socket: the server's event-loop lag, roughly."""
        client = await self.connect("probe", media=False)
        try:
            while time.monotonic() < until:
                started = time.perf_counter()
                with contextlib.suppress(Exception):
                    await client.request("ping", timeout=5)
                    self.rtts.append(time.perf_counter() - started)
                await asyncio.sleep(0.1)
        finally:
            await client.close()

    async def sample_fds(self, until: float) -> None:
        while time.monotonic() < until:
            self.fd_samples.append(_fds(self.pid))
            await asyncio.sleep(1.0)

    async def run(self) -> dict[str, Any]:
        from tests.media import ToneTrack

        speaker = await self.connect("speaker", "speaker", publish=ToneTrack(440))
        for _ in range(self.args.audience):
            await self.join()
        start = time.monotonic()
        until = start + 60 * self.args.minutes
        tasks = [
            asyncio.create_task(self.churn(until)),
            asyncio.create_task(self.probe(until)),
            asyncio.create_task(self.sample_fds(until)),
        ]
        minutes = []
        cpu = cpu_seconds(self.pid)
        lags = await asyncio.to_thread(lag_buckets, self.metrics)
        for minute in range(1, int(self.args.minutes) + 1):
            await asyncio.sleep(max(0.0, start + 60 * minute - time.monotonic()))
            now_cpu = cpu_seconds(self.pid)
            now_lags = await asyncio.to_thread(lag_buckets, self.metrics)
            rtts, self.rtts = self.rtts, []
            packets, self.packets = self.packets, 0
            fd_samples, self.fd_samples = self.fd_samples, []
            fds = _fds(self.pid)
            minutes.append(
                {
                    "minute": minute,
                    "rss_mb": round(rss_mb(self.pid), 1),
                    "fds": fds,
                    "fds_floor": min(fd_samples, default=fds),
                    "server_cpu_s": round(now_cpu - cpu, 2),
                    "loop_lag_p99_ms": round(1000 * lag_p99(lags, now_lags), 1),
                    "ping_rtt_p99_ms": round(1000 * percentile(rtts, 99), 2),
                    "ping_rtt_p50_ms": round(1000 * percentile(rtts, 50), 2),
                    "listeners": len(self.listeners),
                    "packets_received": packets,
                }
            )
            cpu, lags = now_cpu, now_lags
            print(json.dumps(minutes[-1]), flush=True)
        await asyncio.gather(*tasks)
        for client in [speaker, *self.listeners.values()]:
            with contextlib.suppress(Exception):
                await client.close()
        return {"minutes": minutes, "actions": dict(self.actions), "failures": dict(self.failures)}


def flatness(minutes: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth of RSS and of the fds' floor past the baseline minute (5, or 1 for short runs)."""
    base = minutes[min(5, len(minutes)) - 1] if len(minutes) > 5 else minutes[0]
    later = minutes[base["minute"] - 1 :]
    peak_rss = max(m["rss_mb"] for m in later)
    fds = "fds_floor" if "fds_floor" in base else "fds"  # runs recorded before the floor
    peak_fds = max(m[fds] for m in later)
    rss_growth = peak_rss / base["rss_mb"] - 1
    fds_growth = peak_fds / base[fds] - 1
    return {
        "baseline_minute": base["minute"],
        "rss_growth": round(rss_growth, 4),
        "fds_growth": round(fds_growth, 4),
        "flat": rss_growth <= 0.05 and fds_growth <= 0.05,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--audience", type=int, default=20, help="steady listeners")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between actions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    port = free_port()
    with tempfile.TemporaryFile() as log:
        server = start_server(server_command("signaling.server.cli", port, 3), log)
        try:
            wait_healthy(port, server, 30)
            soak = Soak(
                args,
                f"ws://127.0.0.1:{port}/rtc",
                server.pid,
                f"http://127.0.0.1:{port}/metrics",
            )
            result = asyncio.run(soak.run())
        finally:
            server.terminate()
            server.wait(30)
    result.update(
        command=shlex.join([sys.executable, "-m", "benchmarks.soak", *(argv or sys.argv[1:])]),
        config=vars(args) | {"json": str(args.json)},
        flatness=flatness(result["minutes"]),
        versions=versions(),
        cpu=cpu_model(),
    )
    print(json.dumps(result["flatness"]))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
