"""Mixing benchmark: one room in mix mode, S speakers, a growing audience, a real server process.

Run from the repository root::

    python -m benchmarks.mixing --listeners 0,50,100,200 --speakers 3 --seconds 10 \\
        --json bench-results/mixing.json

``--listeners`` takes one audience size or a rising list; the audience grows to
each size in turn and is measured for ``--seconds`` there, on the same server.
The server is ``PodiumServer`` in its own process (spawned; a control pipe
reads its mixer's own accounting), so its CPU comes from /proc without the
clients' mixed in.  What is reported per audience size:

* server CPU (the whole process) and the codec CPU of the room: the mixer
  measures the thread time of its decode + mix + encode work every tick, so
  the codec figure is the room's own, not inferred;
* packets encoded and decoded per tick, and egress packets per second: only
  egress should grow with the audience;
* added latency capture → listener: speaker 0 sends a quiet tone and, every
  240 ms, a 60 ms burst at another frequency starting on a frame boundary;
  it notes when it hands each burst's first frame to its encoder.  A probe
  listener decodes slot 0 (the mix) packet by packet on arrival and notes
  the arrival of the first packet carrying the burst.  The difference is the
  mouth-to-ear delay minus the listener's own jitter buffer and playout: the
  speaker's encoding, the network (loopback), the server's jitter buffer and
  20 ms tick, decode, mix, encode and fan-out (forwarding the same packet
  unmixed takes about a millisecond on loopback);
* the server's event-loop lag (a 10 ms timer's lateness), p50/p99/max.

Listeners count packets in worker processes without decoding (a decoding
client costs several times more and would saturate before the server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import functools
import json
import math
import multiprocessing
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.common import (
    EXIT_CODES,
    HOST,
    LagProbe,
    Message,
    Worker,
    ask,
    collect,
    cpu_model,
    cpu_times,
    exit_status,
    free_port,
    machine_ticks,
    percentile,
    serve_commands,
    sleep_until,
    spawn,
    versions,
    wait_healthy,
)
from sfu.rtp import FRAME_SAMPLES

ROOM = "bench"
log_line = functools.partial(common.log_line, "mixing")
RATE = 48_000
TONES = (300.0, 450.0, 600.0, 750.0, 900.0, 1050.0)  # speaker i's continuous tone
BURST = 1500.0  # speaker 0's bursts: a frequency no speaker's tone is near
BURST_EVERY = 12  # frames: one burst each 240 ms ...
BURST_FRAMES = 3  # ... lasting 60 ms
MATCH_WINDOW = 0.23  # s: a burst heard later than this is not told from the next one
MAX_LISTENERS_PER_WORKER = 150
TARGET_LATENCY_P99_MS = 60.0
TARGET_CODEC_GROWTH = 0.25  # codec CPU at the largest audience vs the smallest: at most +25 %


# ---------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------
def server_main(port: int, commands: Any, results: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator stops us
    with contextlib.suppress(ImportError):
        import uvloop  # as ``podium serve`` does

        uvloop.install()
    asyncio.run(_serve(port, commands, results))


async def _serve(port: int, commands: Any, results: Any) -> None:
    from sfu.config import MediaConfig
    from signaling.room.settings import RoomSettings
    from signaling.server.config import ServerConfig
    from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
    from signaling.server.server import PodiumServer

    config = ServerConfig(
        api_keys={DEV_API_KEY: DEV_API_SECRET},
        host=HOST,
        port=port,
        media=MediaConfig(announce_addresses=(HOST,)),
        room=RoomSettings(media_mode="mix", empty_timeout=60.0),
    )
    server = PodiumServer(config)
    await server.start()
    lag = LagProbe()
    probe = asyncio.create_task(lag.run())

    async def stats(command: Message) -> Message:
        room = server.rooms.get(ROOM)
        dump = room.media.dump() if room else {"mixing": {}, "stats": {}}
        return {
            "type": "stats",
            "mixing": dump["mixing"].get("stats", {}),
            "media": dump["stats"],
            "mixed": dump["mixing"].get("mixed", []),
            "lag": lag.take(),
        }

    async def stop(command: Message) -> Message:
        probe.cancel()
        await server.stop()
        return {"type": "stopped"}

    await serve_commands(commands, results, {"stats": stats, "stop": stop})


# ---------------------------------------------------------------------------
# Client worker processes
# ---------------------------------------------------------------------------
def worker_main(role: str, url: str, commands: Any, results: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_worker(role, url, commands, results))


def _burst_track(frequency: float, onsets: list[float]) -> Any:
    """Speaker 0: a quiet tone plus a burst every 240 ms; notes each burst's capture time."""
    import av
    from aiortc import MediaStreamTrack

    class BurstTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._index = 0
            self._started: float | None = None

        async def recv(self) -> av.AudioFrame:
            if self._started is None:
                self._started = time.monotonic()
            i = self._index
            delay = self._started + i * FRAME_SAMPLES / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t = (np.arange(FRAME_SAMPLES) + i * FRAME_SAMPLES) / RATE
            samples = 0.1 * np.sin(2 * np.pi * frequency * t)
            if i % BURST_EVERY < BURST_FRAMES:
                samples += 0.3 * np.sin(2 * np.pi * BURST * t)
                if i % BURST_EVERY == 0:
                    onsets.append(time.monotonic())  # handed to the encoder now
            pcm = (samples * 32767).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = i * FRAME_SAMPLES
            frame.time_base = fractions.Fraction(1, RATE)
            self._index += 1
            return frame

    return BurstTrack()


class OnsetProbe:
    """Decodes slot 0 packet by packet on arrival; notes when a burst first shows."""

    def __init__(self) -> None:
        from sfu.rtc.levels import PcmDecoder

        self.decoder = PcmDecoder()
        self.onsets: list[float] = []
        phase = 2 * np.pi * BURST * np.arange(FRAME_SAMPLES) / RATE
        self._probe = np.exp(-1j * phase) * (2 / FRAME_SAMPLES)
        self._quiet = True

    def on_packet(self, slot: int, packet: Any) -> None:
        if slot != 0:
            return
        arrival = time.monotonic()
        samples = self.decoder.decode(packet.payload)
        if samples is None or len(samples) != FRAME_SAMPLES:
            return
        amplitude = abs(complex(np.dot(samples, self._probe)))
        if self._quiet and amplitude > 0.06:
            self.onsets.append(arrival)
        if amplitude > 0.06:
            self._quiet = False
        elif amplitude < 0.02:
            self._quiet = True


async def _worker(role: str, url: str, commands: Any, results: Any) -> None:
    from signaling.client.client import PodiumClient
    from signaling.client.tracks import ToneTrack
    from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
    from signaling.wire.tokens import mint_token

    clients: list[PodiumClient] = []
    received = [0]
    onsets: list[float] = []  # speakers: bursts captured; probe: bursts heard
    probe = OnsetProbe() if role == "probe" else None

    def count(slot: int, packet: Any) -> None:
        received[0] += 1

    async def join(identity: str, index: int) -> None:
        speaker = role == "speakers"
        token = mint_token(
            DEV_API_KEY,
            DEV_API_SECRET,
            identity=identity,
            room=ROOM,
            role="speaker" if speaker else "listener",
        )
        kwargs: dict[str, Any] = {"host_addresses": [HOST], "timeout": 30.0}
        if speaker:
            tone = TONES[index % len(TONES)]
            kwargs["publish"] = _burst_track(tone, onsets) if index == 0 else ToneTrack(tone, 0.1)
        else:
            kwargs["on_packet"] = probe.on_packet if probe is not None else count
        client = await PodiumClient.connect(url, token, **kwargs)
        clients.append(client)
        await client.wait_connected(timeout=30.0)

    async def join_all(command: Message) -> Message:
        outcomes = await asyncio.gather(
            *(join(name, i) for i, name in command["identities"]), return_exceptions=True
        )
        return {
            "type": "joined",
            "errors": [repr(o) for o in outcomes if isinstance(o, BaseException)],
        }

    async def report(command: Message) -> Message:
        heard = probe.onsets if probe is not None else onsets
        return {"type": "report", "received": received[0], "onsets": list(heard)}

    async def stop(command: Message) -> Message:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        return {"type": "stopped"}

    await serve_commands(commands, results, {"join": join_all, "report": report, "stop": stop})


# ---------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------
def latencies(
    captured: Sequence[float], heard: Sequence[float], start: float, end: float
) -> list[float]:
    """Each burst captured in [start, end) matched to the first onset heard after it."""
    out = []
    for at in captured:
        if start <= at < end:
            later = [h - at for h in heard if 0.0 <= h - at < MATCH_WINDOW]
            if later:
                out.append(min(later))
    return out


@dataclass
class Snapshot:
    at: float
    cpu: tuple[float, float]
    ticks: tuple[int, int]
    server: Message
    received: int


def snapshot(server_pid: int, control: Worker, listeners: Sequence[Worker]) -> Snapshot:
    reports = ask(listeners, [{"type": "report"}] * len(listeners), 30.0) if listeners else []
    (stats,) = ask([control], [{"type": "stats"}], 30.0)
    return Snapshot(
        time.monotonic(),
        cpu_times(server_pid),
        machine_ticks(),
        stats,
        sum(int(r["received"]) for r in reports),
    )


def measure_step(
    n: int,
    seconds: float,
    server_pid: int,
    control: Worker,
    listeners: Sequence[Worker],
    speakers: Worker,
    probe: Worker,
) -> Message:
    before = snapshot(server_pid, control, listeners)
    sleep_until(before.at + seconds)
    after = snapshot(server_pid, control, listeners)
    elapsed = after.at - before.at
    (spoken,) = ask([speakers], [{"type": "report"}], 30.0)
    (heard,) = ask([probe], [{"type": "report"}], 30.0)
    lat = latencies(spoken["onsets"], heard["onsets"], before.at, after.at - MATCH_WINDOW)
    mix0, mix1 = before.server["mixing"], after.server["mixing"]
    media0, media1 = before.server["media"], after.server["media"]

    def delta(a: Message, b: Message, key: str) -> float:
        return float(b.get(key, 0) - a.get(key, 0))

    ticks = delta(mix0, mix1, "ticks") or math.nan
    server_cpu = sum(after.cpu) - sum(before.cpu)
    codec_cpu = delta(mix0, mix1, "codec_cpu_us") / 1e6
    busy = (after.ticks[0] - before.ticks[0]) / max(1, after.ticks[1] - before.ticks[1])
    lag = after.server["lag"]
    received = after.received - before.received
    return {
        "listeners": n,
        "seconds": round(elapsed, 2),
        "mixed_speakers": after.server["mixed"],
        "server_cpu_share": round(server_cpu / elapsed, 4),
        "codec_cpu_share": round(codec_cpu / elapsed, 4),
        "codec_cpu_us_per_tick": round(codec_cpu * 1e6 / ticks, 1),
        "other_server_cpu_share": round((server_cpu - codec_cpu) / elapsed, 4),
        "ticks_per_s": round(ticks / elapsed, 2),
        "ticks_skipped": int(delta(mix0, mix1, "ticks_skipped")),
        "encodes_per_tick": round(delta(mix0, mix1, "encoded") / ticks, 3),
        "shared_per_tick": round(delta(mix0, mix1, "shared") / ticks, 3),
        "decodes_per_tick": round(delta(mix0, mix1, "decoded") / ticks, 3),
        "concealed": int(delta(mix0, mix1, "concealed")),
        "egress_packets_per_s": round(delta(media0, media1, "packets_out") / elapsed, 1),
        "listener_packets_per_s": round(received / elapsed / n, 2) if n else None,
        "latency_samples": len(lat),
        "latency_p50_ms": round(percentile(lat, 50) * 1000, 1) if lat else None,
        "latency_p99_ms": round(percentile(lat, 99) * 1000, 1) if lat else None,
        "latency_max_ms": round(max(lat) * 1000, 1) if lat else None,
        "latencies_ms": [round(x * 1000, 1) for x in lat],
        "loop_lag_p50_ms": round(percentile(lag, 50) * 1000, 2) if lag else None,
        "loop_lag_p99_ms": round(percentile(lag, 99) * 1000, 2) if lag else None,
        "loop_lag_max_ms": round(max(lag) * 1000, 2) if lag else None,
        "machine_cpu_busy": round(busy, 3),
    }


def run(args: argparse.Namespace) -> Message:
    steps = sorted(args.listeners)
    port = free_port()
    url = f"ws://{HOST}:{port}/rtc"
    ctx = multiprocessing.get_context("spawn")
    control = spawn(ctx, server_main, (port,))
    workers: list[Worker] = []
    try:
        (ready,) = collect([control], 60.0)
        server_pid = ready["pid"]
        wait_healthy(port, None, 30.0)
        speakers = spawn(ctx, worker_main, ("speakers", url))
        probe = spawn(ctx, worker_main, ("probe", url))
        pools = max(1, math.ceil(steps[-1] / MAX_LISTENERS_PER_WORKER))
        listeners = [spawn(ctx, worker_main, ("listeners", url)) for _ in range(pools)]
        workers = [speakers, probe, *listeners]
        for worker, hello in zip(workers, collect(workers, 60.0), strict=True):
            worker.pid = hello["pid"]
        join(probe, [(0, "probe")])
        join(speakers, [(i, f"speaker-{i}") for i in range(args.speakers)])
        log_line(f"server pid {server_pid}; {args.speakers} speakers; settling")
        time.sleep(args.settle)
        results = []
        joined = 0
        for n in steps:
            names = [(i, f"listener-{i:05d}") for i in range(joined, n)]
            for first in range(0, len(names), args.batch):
                batch = names[first : first + args.batch]
                shares = [batch[i :: len(listeners)] for i in range(len(listeners))]
                busy = [(w, s) for w, s in zip(listeners, shares, strict=True) if s]
                replies = ask(
                    [w for w, _ in busy],
                    [{"type": "join", "identities": s} for _, s in busy],
                    180.0,
                )
                errors = [e for r in replies for e in r["errors"]]
                if errors:
                    raise RuntimeError(f"{len(errors)} listeners failed to join: {errors[0]}")
            joined = n
            time.sleep(args.settle)
            log_line(f"{n} listeners: measuring {args.seconds:g} s")
            step = measure_step(
                n, args.seconds, server_pid, control, listeners if n else [], speakers, probe
            )
            log_line(
                f"  server {step['server_cpu_share']:.1%}, codec {step['codec_cpu_share']:.1%}"
                f" ({step['codec_cpu_us_per_tick']} µs/tick), latency p50/p99"
                f" {step['latency_p50_ms']}/{step['latency_p99_ms']} ms"
            )
            results.append(step)
    finally:
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.commands.send({"type": "stop"})
        with contextlib.suppress(Exception):
            collect([w for w in workers if w.process.is_alive()], 15.0)
        with contextlib.suppress(Exception):
            control.commands.send({"type": "stop"})
            collect([control], 15.0)
        for process in [w.process for w in workers] + [control.process]:
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
    return report(args, results)


def join(worker: Worker, identities: list[tuple[int, str]]) -> None:
    (reply,) = ask([worker], [{"type": "join", "identities": identities}], 120.0)
    if reply["errors"]:
        raise RuntimeError(f"join failed: {reply['errors'][0]}")


def report(args: argparse.Namespace, steps: list[Message]) -> Message:
    codec = [s["codec_cpu_us_per_tick"] for s in steps]
    growth = max(codec) / min(codec) - 1.0 if steps and min(codec) > 0 else math.nan
    pooled = [x for s in steps for x in s["latencies_ms"]]
    p99 = percentile(pooled, 99) if pooled else math.inf
    return {
        "command": shlex.join(["python", "-m", "benchmarks.mixing", *args.argv]),
        "parameters": {
            "speakers": args.speakers,
            "listeners": sorted(args.listeners),
            "seconds": args.seconds,
            "settle_s": args.settle,
        },
        "steps": steps,
        "codec_cpu_growth": round(growth, 3),
        "latency_p50_ms": percentile(pooled, 50) if pooled else None,
        "latency_p99_ms": p99,
        "latency_samples": len(pooled),
        "targets": {
            "codec_cpu_growth": f"<= {TARGET_CODEC_GROWTH}",
            "latency_p99_ms": f"<= {TARGET_LATENCY_P99_MS}",
        },
        "targets_met": {
            "codec_cpu_growth": growth <= TARGET_CODEC_GROWTH,
            "latency_p99_ms": p99 <= TARGET_LATENCY_P99_MS,
        },
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
            **versions(),
        },
    }


def listener_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part]
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError("one or more audience sizes, comma-separated")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mixing",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--listeners", type=listener_counts, default=[0, 50, 100])
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per audience size")
    parser.add_argument("--settle", type=float, default=2.0, help="wait before each window")
    parser.add_argument("--batch", type=int, default=50, help="listeners joining at once")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= args.speakers <= len(TONES):
        parser.error(f"--speakers must be 1 to {len(TONES)}")
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return exit_status("mixing", result["targets_met"], result, result["targets"])


if __name__ == "__main__":
    sys.exit(main())
