"""Load generator: rooms of speakers and listeners against a Podium server, with a capacity search.

Run from the repository root (or as ``podium bench``)::

    python -m benchmarks.load --scenario room --speakers 3 --listeners 100 --seconds 20
    python -m benchmarks.load --scenario room --speakers 3 --find-capacity --json cap.json
    python -m benchmarks.load --scenario storm --listeners 200 --join-window 2
    python -m benchmarks.load --url ws://sfu.example:7880/rtc --api-key K --api-secret S ...

Scenarios: ``room`` (one room, S speakers + L listeners), ``rooms`` (R rooms of S + L),
``storm`` (L listeners join within ``--join-window`` seconds), ``churn`` (listeners
keep leaving and joining, ``--stay`` seconds each on average).  Without ``--url`` a
server is started on loopback in its own process.

Clients live in worker processes.  Listeners do real ICE/DTLS/SRTP but never decode:
they count packets per slot and timestamp them.  Publishers send pre-encoded Opus
(``av.Packet`` through aiortc's sender, which then skips encoding) with RFC 6464
levels following a talk pattern.

How one-way latency is measured.  The SFU rewrites each packet's SSRC, sequence
number and timestamp, but never its Opus payload.  Every publisher loops over its
own cycle of ``CYCLE`` pre-encoded frames (one loud, one quiet cycle; noise makes
every payload distinct), so a payload names (publisher, cycle, frame) — at most
once per cycle, 5 s.  Just before handing frame *i* to aiortc, the publisher writes
``time.monotonic()`` into slot *i* of a shared-memory table (an mmap'd file in
/dev/shm); a listener looks the arriving payload up, reads the slot and subtracts.
``CLOCK_MONOTONIC`` is one clock for all processes of a host, so publishers and
listeners must run on the same machine (the server may be anywhere).

How loss is measured.  Per slot, the forwarder keeps the outgoing sequence numbers
continuous across speaker changes and a gap in the publisher's sequence is a gap
in the forwarded one, so each listener counts expected = highest - first + 1 per
slot, as an RTP receiver does; policy drops (a silent speaker losing its slot) are
not losses.  Packets are counted inside a measurement window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import functools
import importlib.util
import itertools
import json
import math
import mmap
import multiprocessing
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks import common
from benchmarks.common import (
    HOST,
    Message,
    Worker,
    ask,
    collect,
    cpu_model,
    cpu_seconds,
    free_port,
    machine_ticks,
    percentile,
    serve_commands,
    server_command,
    shutdown,
    spawn,
    start_server,
    versions,
    wait_healthy,
)
from sfu.rtp import FRAME_SAMPLES, PTIME

log_line = functools.partial(common.log_line, "load")

SAMPLE_RATE = 48_000
CYCLE = 250  # frames per pre-encoded cycle (5 s): latencies up to 5 s are unambiguous
LOUD, QUIET = 0, 1
LISTENERS_PER_WORKER = 100
PUBLISHERS_PER_WORKER = 40

# Latency histograms: log bins 2 % wide from 50 µs to ~10 s (exactly mergeable across workers).
LAT_MIN = 50e-6
LAT_STEP = math.log(1.02)
LAT_BINS = 620
COARSE = 5  # per-second histograms use bins 5x wider (~10 %)

LOSS_LIMIT = 0.01
P99_LIMIT_MS = 100.0


def lat_bin(seconds: float) -> int:
    if seconds <= LAT_MIN:
        return 0
    return min(LAT_BINS - 1, int(math.log(seconds / LAT_MIN) / LAT_STEP))


def bin_upper_ms(b: int) -> float:
    return LAT_MIN * math.exp(LAT_STEP * (b + 1)) * 1000.0


def hist_percentile(hist: Sequence[int], q: float, width: int = 1) -> float:
    """Upper edge (ms) of the bin holding the q-th percentile (conservative by one bin)."""
    total = sum(hist)
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * total))
    running = 0
    for b, n in enumerate(hist):
        running += n
        if running >= rank:
            return bin_upper_ms((b + 1) * width - 1)
    return bin_upper_ms(len(hist) * width - 1)


# ---------------------------------------------------------------------------
# Audio: pre-encoded cycles, talk patterns
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Cycles:
    """Every publisher's loud and quiet cycles: payloads and their RFC 6464 levels."""

    payloads: tuple[tuple[bytes, ...], ...]  # [publisher * 2 + LOUD|QUIET][frame]
    levels: tuple[tuple[int, ...], ...]

    def ids(self) -> dict[bytes, int]:
        """Payload → shared-memory slot; payloads that occur twice are left out (ambiguous)."""
        seen: Counter[bytes] = Counter(p for cycle in self.payloads for p in cycle)
        return {
            payload: c * CYCLE + i
            for c, cycle in enumerate(self.payloads)
            for i, payload in enumerate(cycle)
            if seen[payload] == 1
        }


def encode_cycles(publishers: int, seed: int = 1) -> Cycles:
    """Speech-like loud frames (a gliding tone in noise, syllable envelope) and quiet noise."""
    import numpy as np

    from sfu.levels import pcm_level
    from sfu.rtc.mixing import MixEncoder

    rng = np.random.default_rng(seed)
    payloads: list[tuple[bytes, ...]] = []
    levels: list[tuple[int, ...]] = []
    n = CYCLE * FRAME_SAMPLES
    t = np.arange(n) / SAMPLE_RATE
    for p in range(publishers):
        for kind in (LOUD, QUIET):
            noise = rng.standard_normal(n)
            if kind == LOUD:
                f0 = 140.0 + 15.0 * p % 120
                pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
                voice = np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE)
                envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + p)
                signal_ = 0.25 * envelope * voice + 0.02 * noise
            else:
                signal_ = 0.0008 * noise
            pcm = (np.clip(signal_, -1, 1) * 32767).astype(np.int16)
            encoder = MixEncoder(32_000)
            frames = pcm.reshape(-1, FRAME_SAMPLES)
            # A few extra frames flush the encoder's lookahead.
            encoded = (encoder.encode(frames[i % len(frames)]) for i in range(len(frames) + 4))
            out = [packet for packet in encoded if packet is not None]
            payloads.append(tuple(out[:CYCLE]))
            levels.append(tuple(pcm_level(f) for f in frames))
    return Cycles(tuple(payloads), tuple(levels))


def talk_spans(
    pattern: str, index: int, speakers: int, horizon: float, rng: random.Random
) -> list[tuple[float, float]]:
    """When publisher ``index`` of ``speakers`` in a room talks, in seconds after the epoch."""
    if pattern == "constant":
        return [(0.0, math.inf)]
    spans: list[tuple[float, float]] = []
    if pattern == "turns":  # round robin, 4 s turns overlapping by 0.3 s
        turn = 4.0
        start = index * turn
        while start < horizon:
            spans.append((start, start + turn + 0.3))
            start += turn * speakers
        return spans
    # "random": talk spurts of ~2 s between pauses that grow with the number of speakers
    t = rng.uniform(0.0, 2.0)
    while t < horizon:
        length = rng.expovariate(1 / 2.0) + 0.3
        spans.append((t, t + length))
        t += length + rng.expovariate(1 / (1.0 + 1.5 * (speakers - 1)))
    return spans


# ---------------------------------------------------------------------------
# Worker processes: publishers and listeners
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    url: str
    api_key: str
    api_secret: str
    host_addresses: tuple[str, ...] | None
    table_path: str
    table_slots: int
    join_timeout: float
    thin_listeners: bool = False


@dataclass(eq=False)
class SlotSeq:
    """One slot's window counts, as an RTP receiver keeps them (extended sequence numbers)."""

    first: int = -1
    highest: int = -1
    received: int = 0

    def add(self, seq: int) -> None:
        self.received += 1
        if self.highest < 0:
            self.first = self.highest = seq + (1 << 20)
            return
        delta = (seq - self.highest) & 0xFFFF
        if delta < 0x8000:
            self.highest += delta
        elif self.highest - (0x10000 - delta) < self.first:
            self.first = self.highest - (0x10000 - delta)

    @property
    def expected(self) -> int:
        return self.highest - self.first + 1 if self.highest >= 0 else 0


@dataclass(eq=False)
class Listener:
    identity: str
    room: str
    slots: list[SlotSeq]
    started: float = 0.0
    connected_at: float | None = None
    first_audio: float | None = None
    total: int = 0
    client: Any = None
    leaving: bool = False


@dataclass(eq=False)
class WindowStats:
    start: float = math.inf
    end: float = math.inf
    received: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * LAT_BINS)
    per_second: dict[int, list[int]] = field(default_factory=dict)
    """Second in the window → [packets, coarse latency histogram...]."""


def worker_main(setup: Setup, commands: Any, results: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator handles ^C
    with contextlib.suppress(ImportError):
        import uvloop

        if not setup.thin_listeners:  # they need asyncio's selector loop
            uvloop.install()
    asyncio.run(_Worker(setup, commands, results).run())


class _Worker:
    def __init__(self, setup: Setup, commands: Any, results: Any) -> None:
        self.setup = setup
        self.commands = commands
        self.results = results
        self.listeners: dict[str, Listener] = {}
        self.gone: list[Listener] = []  # left (churn, shrink): still count their join times
        self.publishers: list[Any] = []
        self.tracks: list[Any] = []
        self.window = WindowStats()
        self.errors: Counter[str] = Counter()
        self.ids: dict[bytes, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.churn_serial = 0
        self.scheduled = 0  # joins asked for ...
        self.resolved = 0  # ... and joins that connected or failed
        fd = os.open(setup.table_path, os.O_RDWR)
        self.table_map = mmap.mmap(fd, setup.table_slots * 8)
        os.close(fd)
        self.table: Any = memoryview(self.table_map).cast("d")  # float64 send times
        self.thin: Any = None  # benchmarks.thin_listener.ThinReceiver, made in the loop

    async def run(self) -> None:
        handlers = {
            name.removeprefix("cmd_"): getattr(self, name)
            for name in dir(self)
            if name.startswith("cmd_")
        }
        await serve_commands(self.commands, self.results, handlers)

    async def cmd_stop(self, command: Message) -> Message:
        await self.close_all()
        return {"type": "stopped"}

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def token(self, identity: str, room: str, role: str) -> str:
        from signaling.wire.tokens import mint_token

        return mint_token(
            self.setup.api_key, self.setup.api_secret, identity=identity, room=room, role=role
        )

    # -- publishers ----------------------------------------------------------
    async def cmd_publish(self, command: Message) -> Message:
        """Join as speakers and send from ``epoch`` on, following each one's talk spans."""
        from signaling.client.client import PodiumClient

        epoch = float(command["epoch"])

        async def publish(spec: Message) -> None:
            track = CycleTrack(spec, epoch, self.table)
            try:
                client = await PodiumClient.connect(
                    self.setup.url,
                    self.token(spec["identity"], spec["room"], "speaker"),
                    publish=track,
                    on_packet=_ignore,  # speakers hear each other: undecoded, uncounted
                    host_addresses=self.setup.host_addresses,
                    tune_process=True,
                    timeout=self.setup.join_timeout,
                )
                await client.wait_connected(self.setup.join_timeout)
            except Exception as exc:
                self.errors[f"publisher:{error_kind(exc)}"] += 1
                return
            send_levels(client, track)
            self.publishers.append(client)
            self.tracks.append(track)

        await asyncio.gather(*(publish(spec) for spec in command["publishers"]))
        return {"type": "published", "joined": len(self.publishers)}

    async def cmd_quiet(self, command: Message) -> Message:
        for track in self.tracks:
            track.quiet = True
        return {"type": "quiet", "sent": sum(t.sent for t in self.tracks)}

    # -- listeners -----------------------------------------------------------
    async def cmd_setup(self, command: Message) -> Message:
        self.ids = command["ids"]
        return {"type": "setup_done"}

    async def cmd_join(self, command: Message) -> Message:
        """Join each listener at its own monotonic time; answer at once (report shows progress)."""
        slots = int(command["slots"])
        self.scheduled += len(command["listeners"])
        for identity, room, at in command["listeners"]:
            self.spawn(self.join_listener(identity, room, slots, float(at)))
        return {"type": "joining"}

    async def join_listener(self, identity: str, room: str, slots: int, at: float) -> None:
        from signaling.client.client import PodiumClient

        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        listener = Listener(identity, room, [SlotSeq() for _ in range(slots)])
        listener.started = time.monotonic()
        self.listeners[identity] = listener
        try:
            listener.client = await PodiumClient.connect(
                self.setup.url,
                self.token(identity, room, "listener"),
                on_packet=self.packet_counter(listener),
                host_addresses=self.setup.host_addresses,
                tune_process=True,
                timeout=self.setup.join_timeout,
            )
            await listener.client.wait_connected(self.setup.join_timeout)
            listener.connected_at = time.monotonic()
            if self.setup.thin_listeners:
                from benchmarks.thin_listener import ThinReceiver

                self.thin = self.thin or ThinReceiver()
                on_packet = self.packet_counter(listener)
                self.thin.attach(listener.client, lambda p: on_packet(p.slot, p), sample=10)
        except Exception as exc:
            self.errors[f"join:{error_kind(exc)}"] += 1
            self.listeners.pop(identity, None)
            if listener.client is not None:
                with contextlib.suppress(Exception):
                    await listener.client.close()
        finally:
            self.resolved += 1

    def packet_counter(self, listener: Listener) -> Callable[[int, Any], None]:
        window, ids, table = self, self.ids, self.table
        monotonic = time.monotonic

        def on_packet(slot: int, packet: Any) -> None:
            now = getattr(packet, "arrival", None) or monotonic()  # thin: the kernel's time
            listener.total += 1
            if listener.first_audio is None:
                listener.first_audio = now
            w = window.window
            if not w.start <= now < w.end:
                return
            listener.slots[slot].add(packet.sequence_number)
            w.received += 1
            second = w.per_second.get(int(now - w.start))
            if second is None:
                second = w.per_second[int(now - w.start)] = [0] * (1 + LAT_BINS // COARSE + 1)
            second[0] += 1
            key = ids.get(packet.payload)
            if key is None:
                return
            latency = now - table[key]
            if 0.0 <= latency < CYCLE * PTIME / 2:
                b = lat_bin(latency)
                w.hist[b] += 1
                second[1 + b // COARSE] += 1

        return on_packet

    async def cmd_leave(self, command: Message) -> Message:
        """Leave ``count`` listeners (the newest first)."""
        victims = list(self.listeners.values())[-int(command["count"]) :]
        await asyncio.gather(*(self.leave_listener(v) for v in victims))
        return {"type": "left", "count": len(victims)}

    async def leave_listener(self, listener: Listener) -> None:
        listener.leaving = True
        self.listeners.pop(listener.identity, None)
        self.gone.append(listener)
        if listener.client is not None:
            with contextlib.suppress(Exception):
                await listener.client.leave()

    async def cmd_churn(self, command: Message) -> Message:
        """Each listener leaves after an exponential stay; a new one takes its place at once."""
        stay, until, slots = float(command["stay"]), float(command["until"]), int(command["slots"])
        rng = random.Random(command["seed"])

        async def cycle(listener: Listener) -> None:
            while True:
                leave_at = time.monotonic() + rng.expovariate(1.0 / stay)
                if leave_at >= until:
                    return
                await asyncio.sleep(max(0.0, leave_at - time.monotonic()))
                await self.leave_listener(listener)
                self.churn_serial += 1
                identity = f"{listener.identity.split('~')[0]}~{self.churn_serial}"
                self.scheduled += 1
                await self.join_listener(identity, listener.room, slots, time.monotonic())
                replacement = self.listeners.get(identity)
                if replacement is None:
                    return
                listener = replacement

        for listener in list(self.listeners.values()):
            self.spawn(cycle(listener))
        return {"type": "churning"}

    # -- measurement -----------------------------------------------------------
    async def cmd_window(self, command: Message) -> Message:
        self.window = WindowStats(float(command["start"]), float(command["end"]))
        for listener in [*self.listeners.values(), *self.gone]:
            listener.slots = [SlotSeq() for _ in listener.slots]
        return {"type": "window_set"}

    async def cmd_report(self, command: Message) -> Message:
        everyone = [*self.listeners.values(), *self.gone]
        live = list(self.listeners.values())
        joined = [x for x in everyone if x.connected_at is not None]
        expected = sum(s.expected for x in everyone for s in x.slots)
        received = sum(s.received for x in everyone for s in x.slots)
        for x in live:  # dropped by the server or failed: counted once, then gone
            client = x.client
            if client is None or x.connected_at is None:
                continue
            if client.closed_reason is not None or (
                client.pc is not None and client.pc.connectionState in ("failed", "closed")
            ):
                reason = client.closed_reason or client.pc.connectionState
                self.errors[f"disconnected:{reason}"] += 1
                self.listeners.pop(x.identity, None)
                self.gone.append(x)
                self.spawn(client.close())
        live = list(self.listeners.values())
        errors = Counter(self.errors)
        return {
            "type": "report",
            "listeners": len(live),
            "connected": sum(1 for x in live if x.connected_at is not None),
            "joins_done": len(joined),
            "pending": self.scheduled - self.resolved,
            "join_ms": [(x.connected_at - x.started) * 1000.0 for x in joined],  # type: ignore[operator]
            "first_audio_ms": [
                (x.first_audio - x.started) * 1000.0 for x in joined if x.first_audio is not None
            ],
            "join_started": [x.started for x in joined],
            "no_audio": sum(1 for x in live if x.connected_at is not None and x.total == 0),
            "received_total": sum(x.total for x in everyone),
            "window_received": self.window.received,
            "window_expected": expected,
            "window_counted": received,
            "hist": self.window.hist,
            "per_second": self.window.per_second,
            "errors": dict(errors),
            "sent": sum(t.sent for t in self.tracks),
            "send_lag_ms": max((t.max_lag for t in self.tracks), default=0.0) * 1000.0,
        }

    async def close_all(self) -> None:
        clients = [x.client for x in self.listeners.values() if x.client is not None]
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10.0):
                await asyncio.gather(
                    *(c.close() for c in [*clients, *self.publishers]), return_exceptions=True
                )


def _ignore(slot: int, packet: Any) -> None:
    pass


def error_kind(exc: BaseException) -> str:
    """A short, bounded name for what went wrong (PodiumError code or exception type)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    return type(exc).__name__


def _cycle_track_class() -> type:
    from aiortc import MediaStreamTrack

    class _CycleTrack(MediaStreamTrack):
        """Pre-encoded Opus at 50 packets/s, each send time written to the shared table."""

        kind = "audio"

        def __init__(self, spec: Message, epoch: float, table: Any) -> None:
            import av

            super().__init__()
            self._av = av
            self.payloads: list[list[bytes]] = spec["payloads"]
            self.levels: list[list[int]] = spec["levels"]
            self.base = int(spec["table_base"])
            self.spans: list[tuple[float, float]] = [tuple(s) for s in spec["spans"]]
            self.epoch = epoch
            self.table = table
            self.level = 127
            self.sent = 0
            self.max_lag = 0.0
            self.quiet = False
            self._n = 0
            self._time_base = fractions.Fraction(1, SAMPLE_RATE)

        def _talking(self, t: float) -> bool:
            return any(a <= t < b for a, b in self.spans)

        async def recv(self) -> Any:
            while True:
                due = self.epoch + self._n * PTIME
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.2:  # far behind (a stall): skip, as a live source would
                    self._n = int((time.monotonic() - self.epoch) / PTIME)
                    continue
                if not self.quiet:
                    break
                self._n += 1  # quiet: stop sending, keep the clock
            n, self._n = self._n, self._n + 1
            kind = LOUD if self._talking(n * PTIME) else QUIET
            i = n % CYCLE
            payload = self.payloads[kind][i]
            self.level = self.levels[kind][i]
            now = time.monotonic()
            self.max_lag = max(self.max_lag, now - due)
            self.table[self.base + kind * CYCLE + i] = now
            self.sent += 1
            packet = self._av.Packet(payload)
            packet.pts = n * FRAME_SAMPLES
            packet.time_base = self._time_base
            return packet

    return _CycleTrack


def CycleTrack(spec: Message, epoch: float, table: Any) -> Any:
    """A track of pre-encoded packets (aiortc imported only inside worker processes)."""
    global _CYCLE_TRACK
    if _CYCLE_TRACK is None:
        _CYCLE_TRACK = _cycle_track_class()
    return _CYCLE_TRACK(spec, epoch, table)


_CYCLE_TRACK: type | None = None


def send_levels(client: Any, track: Any) -> None:
    """Put each packet's RFC 6464 level in its header, as browsers do.

    aiortc computes a level only for frames it encodes itself; for pre-encoded
    packets it sends none, and the SFU would fall back to decoding every packet.
    """
    sender = client.pc.getTransceivers()[0].sender
    original = sender._next_encoded_frame

    async def next_encoded_frame(codec: Any) -> Any:
        frame = await original(codec)
        if frame is not None:
            frame.audio_level = -track.level  # aiortc writes (False, -audio_level)
        return frame

    sender._next_encoded_frame = next_encoded_frame


# ---------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What to run, resolved from the command line."""

    scenario: str
    rooms: int
    speakers: int
    listeners: int
    """Per room."""
    seconds: float
    join_rate: float
    join_window: float
    stay: float
    talk: str
    slots: int

    @property
    def audience(self) -> int:
        return self.rooms * self.listeners


@dataclass(eq=False)
class LoadSession:
    """A running load: the server (or its URL), the workers and the shared send-time table."""

    args: argparse.Namespace
    plan: Plan
    url: str
    metrics_url: str
    server: subprocess.Popen[bytes] | None
    publishers: list[Worker]
    listeners: list[Worker]
    table_path: str
    serial: int = 0
    placed: list[int] = field(default_factory=list)
    """Listeners assigned to each listener worker so far."""
    samples: list[dict[str, float]] = field(default_factory=list)

    @property
    def workers(self) -> list[Worker]:
        return [*self.publishers, *self.listeners]


def scrape(url: str) -> dict[str, float]:
    """The server's /metrics as {"name{label=value,...}": value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10.0) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            values[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return values


def labelled(values: dict[str, float], prefix: str) -> dict[str, float]:
    """{label value: sample} for a one-label metric, zeros left out."""
    out = {}
    for key, v in values.items():
        if key.startswith(prefix + "{") and v:
            out[key[len(prefix) + 1 : -1].split("=", 1)[1]] = v
    return out


def open_session(args: argparse.Namespace, plan: Plan, log: IO[bytes]) -> LoadSession:
    from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET

    server = None
    if args.url:
        url = args.url
        metrics_url = args.metrics_url or url.replace("ws", "http", 1).replace("/rtc", "/metrics")
        key, secret = args.api_key, args.api_secret
        addresses = tuple(args.client_address) if args.client_address else ("auto",)
    else:
        port = free_port()
        url, metrics_url = f"ws://{HOST}:{port}/rtc", f"http://{HOST}:{port}/metrics"
        key, secret = DEV_API_KEY, DEV_API_SECRET
        addresses = (HOST,)
        server = start_server(server_command(args.server_module, port, plan.slots), log)
        wait_healthy(port, server, 30.0)
    publishers_n = plan.rooms * plan.speakers
    table_slots = max(1, publishers_n) * 2 * CYCLE
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.NamedTemporaryFile(prefix="podium-load-", dir=shm, delete=False) as table:
        table.write(b"\0" * table_slots * 8)
    setup = Setup(
        url, key, secret, addresses, table.name, table_slots, args.join_timeout, args.thin_listeners
    )
    ctx = multiprocessing.get_context("spawn")
    listener_workers = args.workers or max(
        1, math.ceil(plan.audience * (args.capacity_max_factor) / LISTENERS_PER_WORKER)
    )
    pub_workers = max(1, math.ceil(publishers_n / PUBLISHERS_PER_WORKER)) if publishers_n else 0
    pubs = [spawn(ctx, worker_main, (setup,)) for _ in range(pub_workers)]
    lists = [spawn(ctx, worker_main, (setup,)) for _ in range(listener_workers)]
    session = LoadSession(args, plan, url, metrics_url, server, pubs, lists, table.name)
    session.placed = [0] * len(lists)
    for worker, ready in zip(session.workers, collect(session.workers, 60.0), strict=True):
        worker.pid = ready["pid"]
    return session


def close_session(session: LoadSession) -> None:
    if session.server is not None:
        shutdown(session.workers, session.server)
    else:
        with contextlib.suppress(Exception):
            ask(session.workers, [{"type": "stop"}] * len(session.workers), 15.0)
        for w in session.workers:
            w.process.join(timeout=2.0)
            if w.process.is_alive():
                w.process.kill()
    with contextlib.suppress(OSError):
        os.unlink(session.table_path)


def start_publishers(session: LoadSession, cycles: Cycles) -> float:
    """Speakers join every room; returns the epoch their talk patterns count from."""
    plan = session.plan
    rng = random.Random(session.args.seed)
    epoch = time.monotonic() + 2.0 + 0.05 * plan.rooms * plan.speakers
    specs: list[Message] = []
    for r in range(plan.rooms):
        for s in range(plan.speakers):
            p = r * plan.speakers + s
            specs.append(
                {
                    "identity": f"speaker-{r}-{s}",
                    "room": room_name(r),
                    "payloads": [list(cycles.payloads[2 * p]), list(cycles.payloads[2 * p + 1])],
                    "levels": [list(cycles.levels[2 * p]), list(cycles.levels[2 * p + 1])],
                    "table_base": 2 * p * CYCLE,
                    "spans": talk_spans(plan.talk, s, plan.speakers, 4 * 3600.0, rng),
                }
            )
    if not specs:
        return epoch
    shares = [specs[i :: len(session.publishers)] for i in range(len(session.publishers))]
    replies = ask(
        session.publishers,
        [{"type": "publish", "epoch": epoch, "publishers": s} for s in shares],
        60.0 + 2.0 * len(specs),
    )
    joined = sum(int(r["joined"]) for r in replies)
    if joined < len(specs):
        raise RuntimeError(f"only {joined}/{len(specs)} speakers could join")
    return epoch


def room_name(r: int) -> str:
    return f"load-{r}"


def add_listeners(session: LoadSession, per_room: int, starts: Sequence[float]) -> int:
    """Schedule ``per_room`` more listeners in every room, joining at ``starts`` (monotonic)."""
    plan = session.plan
    batch: list[list[tuple[str, str, float]]] = [[] for _ in session.listeners]
    k = 0
    for _ in range(per_room):
        for r in range(plan.rooms):
            w = min(range(len(session.listeners)), key=lambda j: session.placed[j])
            session.placed[w] += 1
            session.serial += 1
            batch[w].append((f"listener-{session.serial:05d}", room_name(r), starts[k]))
            k += 1
    pairs = [(w, b) for w, b in zip(session.listeners, batch, strict=True) if b]
    ask(
        [w for w, _ in pairs],
        [{"type": "join", "listeners": b, "slots": plan.slots} for _, b in pairs],
        30.0,
    )
    return k


def remove_listeners(session: LoadSession, count: int) -> None:
    """Leave ``count`` listeners, taken evenly from the workers."""
    shares = [count // len(session.listeners)] * len(session.listeners)
    for i in range(count % len(session.listeners)):
        shares[i] += 1
    ask(session.listeners, [{"type": "leave", "count": n} for n in shares], 60.0)
    for i, n in enumerate(shares):
        session.placed[i] -= n


def reports(session: LoadSession) -> list[Message]:
    return ask(session.workers, [{"type": "report"}] * len(session.workers), 30.0)


@dataclass
class Progress:
    """The live line: one per second (a rewritten line on a terminal)."""

    session: LoadSession
    last: tuple[float, float, float] | None = None  # (time, server cpu, received)
    tty: bool = field(default_factory=lambda: sys.stderr.isatty())

    def tick(self, label: str) -> list[Message]:
        now = time.monotonic()
        replies = reports(self.session)
        listeners = replies[len(self.session.publishers) :]
        try:
            values = scrape(self.session.metrics_url)
        except OSError:
            values = {}
        cpu = values.get("podium_process_cpu_seconds_total", math.nan)
        rss = values.get("podium_process_resident_memory_bytes", math.nan) / 1e6
        received = float(sum(int(r["received_total"]) for r in listeners))
        rate = cpu_share = math.nan
        if self.last is not None and now > self.last[0]:
            dt = now - self.last[0]
            cpu_share = (cpu - self.last[1]) / dt
            rate = (received - self.last[2]) / dt
        self.last = (now, cpu, received)
        self.session.samples.append(
            {"t": now, "server_cpu_s": cpu, "rss_mb": rss, "received": received}
        )
        hist = merge_hists(listeners)
        expected = sum(int(r["window_expected"]) for r in listeners)
        counted = sum(int(r["window_counted"]) for r in listeners)
        loss = 1 - counted / expected if expected else 0.0
        errors = sum(sum(r["errors"].values()) for r in replies)
        p99 = hist_percentile(hist, 99)
        line = (
            f"{label} listeners {sum(int(r['connected']) for r in listeners)}"
            f"/{sum(int(r['listeners']) for r in listeners)}"
            f" | rx {_num(rate / 1000, '.1f')}k pkt/s | loss {loss:.2%} | p99"
            f" {_num(p99, '.1f')} ms | server CPU {_num(cpu_share, '.0%')} RSS {rss:.0f} MB"
            f" | errors {errors}"
        )
        if self.session.args.quiet:
            pass
        elif self.tty:
            print(f"\r\x1b[2K[load] {line}", end="", file=sys.stderr, flush=True)
        else:
            log_line(line)
        return replies

    def done(self) -> None:
        if self.tty and not self.session.args.quiet:
            print(file=sys.stderr)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


def _num(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def merge_hists(replies: Sequence[Message]) -> list[int]:
    merged = [0] * LAT_BINS
    for r in replies:
        for i, n in enumerate(r["hist"]):
            merged[i] += n
    return merged


def wait_joined(session: LoadSession, progress: Progress, target: int, timeout: float) -> float:
    """Until ``target`` listeners are connected (or failed); returns the seconds it took."""
    started = time.monotonic()
    while True:
        time.sleep(1.0)
        replies = progress.tick("joining")
        listeners = replies[len(session.publishers) :]
        pending = sum(int(r["pending"]) for r in listeners)
        connected = sum(int(r["connected"]) for r in listeners)
        if connected >= target or pending == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            log_line(f"gave up waiting for joins: {connected}/{target} connected")
            return time.monotonic() - started


def measure_window(session: LoadSession, progress: Progress, seconds: float) -> Message:
    """One measurement window: loss, latency, server CPU/RSS from /metrics, client CPU."""
    start = time.monotonic() + 0.5
    end = start + seconds
    window = {"type": "window", "start": start, "end": end}
    ask(session.workers, [window] * len(session.workers), 10.0)
    errors_before: Counter[str] = Counter()
    for r in reports(session):
        errors_before.update(r["errors"])
    while time.monotonic() < start:
        time.sleep(0.05)
    m0, t0 = scrape(session.metrics_url), time.monotonic()
    ticks0 = machine_ticks()
    client0 = sum(cpu_seconds(w.pid) for w in session.workers)
    while time.monotonic() < end - 0.5:
        time.sleep(min(1.0, end - time.monotonic()))
        progress.tick("measuring")
    while time.monotonic() < end:
        time.sleep(0.05)
    m1, t1 = scrape(session.metrics_url), time.monotonic()
    ticks1 = machine_ticks()
    client1 = sum(cpu_seconds(w.pid) for w in session.workers)
    time.sleep(1.0)  # packets of the window still in flight
    replies = reports(session)
    listeners = replies[len(session.publishers) :]
    hist = merge_hists(listeners)
    expected = sum(int(r["window_expected"]) for r in listeners)
    counted = sum(int(r["window_counted"]) for r in listeners)
    connected = sum(int(r["connected"]) for r in listeners)
    dt = t1 - t0
    server_cpu = m1["podium_process_cpu_seconds_total"] - m0["podium_process_cpu_seconds_total"]
    packets_out = m1["podium_packets_out_total"] - m0["podium_packets_out_total"]
    busy = (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1])
    errors: Counter[str] = Counter()
    for r in replies:
        errors.update(r["errors"])
    errors.subtract(errors_before)
    per_second = merge_seconds(listeners)
    return {
        "listeners": connected,
        "seconds": round(dt, 2),
        "expected_packets": expected,
        "delivered_packets": counted,
        "loss": round(1 - counted / expected, 6) if expected else None,
        "latency_ms": {f"p{q}": round(hist_percentile(hist, q), 2) for q in (50, 95, 99)}
        | {"max": round(max((bin_upper_ms(b) for b, n in enumerate(hist) if n), default=0), 2)},
        "latency_samples": sum(hist),
        "listeners_without_audio": sum(int(r["no_audio"]) for r in listeners),
        "server_cpu_share": round(server_cpu / dt, 4),
        "server_cpu_s_per_listener_s": round(server_cpu / dt / connected, 6) if connected else None,
        "server_cpu_us_per_packet_out": round(server_cpu / packets_out * 1e6, 2)
        if packets_out
        else None,
        "packets_out_per_s": round(packets_out / dt, 1),
        "server_rss_mb": round(m1["podium_process_resident_memory_bytes"] / 1e6, 1),
        "server_loop_lag_p99_ms": _ms(
            server_quantile(m0, m1, "podium_event_loop_lag_seconds", 0.99)
        ),
        "server_forward_p99_ms": _ms(
            server_quantile(m0, m1, "podium_forward_duration_seconds", 0.99)
        ),
        "server_dropped": {
            k: v - m0.get(f"podium_packets_dropped_total{{reason={k}}}", 0)
            for k, v in labelled(m1, "podium_packets_dropped_total").items()
        },
        "client_cpu_share": round((client1 - client0) / dt, 3),
        "machine_cpu_busy": round(busy, 3),
        "publisher_max_send_lag_ms": round(
            max(float(r["send_lag_ms"]) for r in replies[: len(session.publishers)]), 2
        )
        if session.publishers
        else None,
        "errors": {k: v for k, v in errors.items() if v},
        "per_second": per_second,
    }


def merge_seconds(listeners: Sequence[Message]) -> list[dict[str, float]]:
    merged: dict[int, list[int]] = {}
    for r in listeners:
        for second, row in r["per_second"].items():
            into = merged.setdefault(int(second), [0] * len(row))
            for i, n in enumerate(row):
                into[i] += n
    series = []
    for second in sorted(merged):
        row = merged[second]
        series.append(
            {
                "second": second,
                "packets": row[0],
                "p50_ms": round(hist_percentile(row[1:], 50, COARSE), 2),
                "p99_ms": round(hist_percentile(row[1:], 99, COARSE), 2),
            }
        )
    return series


def broken_limits(window: Message, loss_limit: float, p99_limit: float) -> list[str]:
    """Each limit ``window`` broke, named with its figure and the option that set it."""
    loss = window["loss"]
    p99 = window["latency_ms"]["p99"]
    broken = []
    if loss is None:
        broken.append("loss: no packets expected (no audio measured)")
    elif loss > loss_limit:
        broken.append(f"loss {loss:.3%} > {loss_limit:.3%} (--max-loss)")
    if math.isnan(p99):
        broken.append("p99 latency: no samples")
    elif p99 > p99_limit:
        broken.append(f"p99 latency {p99} ms > {p99_limit:g} ms (--max-p99-ms)")
    if window["listeners_without_audio"]:
        broken.append(f"{window['listeners_without_audio']} listener(s) received no audio")
    if window["errors"]:
        broken.append(f"client errors: {window['errors']}")
    return broken


def held(window: Message, loss_limit: float, p99_limit: float) -> bool:
    return not broken_limits(window, loss_limit, p99_limit)


def join_summary(listeners: Sequence[Message]) -> Message:
    join_ms = [v for r in listeners for v in r["join_ms"]]
    audio_ms = [v for r in listeners for v in r["first_audio_ms"]]
    return {
        "joins": len(join_ms),
        "join_ms_p50": round(percentile(join_ms, 50), 1),
        "join_ms_p99": round(percentile(join_ms, 99), 1),
        "join_ms_max": round(max(join_ms), 1) if join_ms else None,
        "first_audio_ms_p50": round(percentile(audio_ms, 50), 1),
        "first_audio_ms_p99": round(percentile(audio_ms, 99), 1),
    }


def run(args: argparse.Namespace) -> Message:
    plan = make_plan(args)
    started = time.time()
    with tempfile.NamedTemporaryFile(prefix="podium-load-", suffix=".log", delete=False) as log:
        cycles = encode_cycles(plan.rooms * plan.speakers, seed=args.seed)
        session = open_session(args, plan, log)
        try:
            result = drive(session, cycles)
        except BaseException:
            log_line(f"server log kept in {log.name}")
            raise
        finally:
            close_session(session)
    os.unlink(log.name)
    result.update(
        {
            "plan": asdict(plan),
            "started_at": started,
            "command": shlex.join([sys.executable, "-m", "benchmarks.load", *args.argv]),
            "server": args.url or "local: " + shlex.join(server_command(args.server_module, 0, 0)),
            "machine": {
                "nproc": os.cpu_count(),
                "cpu": cpu_model(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                **versions(),
            },
            "limits": {"loss": args.max_loss, "p99_ms": args.max_p99_ms},
            "server_samples": session.samples,
        }
    )
    return result


def drive(session: LoadSession, cycles: Cycles) -> Message:
    plan, args = session.plan, session.args
    ids = cycles.ids()
    ask(session.listeners, [{"type": "setup", "ids": ids}] * len(session.listeners), 60.0)
    progress = Progress(session)
    log_line(
        f"{plan.scenario}: {plan.rooms} room(s) x ({plan.speakers} speakers + {plan.listeners}"
        f" listeners), talk {plan.talk}; server {session.url}"
    )
    epoch = start_publishers(session, cycles)
    while time.monotonic() < epoch + 1.0:
        time.sleep(0.1)
    m_idle0, t_idle0 = scrape(session.metrics_url), time.monotonic()
    time.sleep(2.0)
    m_idle1, t_idle1 = scrape(session.metrics_url), time.monotonic()
    idle_share = (
        m_idle1["podium_process_cpu_seconds_total"] - m_idle0["podium_process_cpu_seconds_total"]
    ) / (t_idle1 - t_idle0)
    result: Message = {"server_cpu_share_speakers_only": round(idle_share, 4)}

    if args.find_capacity:
        result["capacity"] = find_capacity(session, progress)
        progress.done()
        return result

    # -- joining ---------------------------------------------------------------
    n = plan.listeners
    now = time.monotonic() + 0.5
    if plan.scenario == "storm":
        gap = plan.join_window / max(1, n * plan.rooms)
    else:
        gap = 1.0 / plan.join_rate
    starts = [now + i * gap for i in range(n * plan.rooms)]
    m0 = scrape(session.metrics_url)
    t0 = time.monotonic()
    add_listeners(session, n, starts)
    join_wall = wait_joined(session, progress, n * plan.rooms, args.join_timeout + 30)
    m1 = scrape(session.metrics_url)
    t1 = time.monotonic()
    join_cpu = m1["podium_process_cpu_seconds_total"] - m0["podium_process_cpu_seconds_total"]
    out_during = m1["podium_packets_out_total"] - m0["podium_packets_out_total"]
    replies = reports(session)
    listeners = replies[len(session.publishers) :]
    joins = join_summary(listeners)
    joined = joins["joins"] or 1
    result["joining"] = joins | {
        "wall_s": round(join_wall, 2),
        "rate_per_s": round(joined / max(1e-9, starts[-1] - starts[0]), 1) if n > 1 else None,
        "server_cpu_s": round(join_cpu, 3),
        "server_cpu_ms_per_join": round((join_cpu - idle_share * (t1 - t0)) / joined * 1000.0, 2),
        "packets_out_during": out_during,
        "server_join_p99_s": server_join_p99(m1),
    }

    # -- steady state (or churn) ------------------------------------------------
    if plan.scenario == "churn":
        until = time.monotonic() + plan.seconds + 1.0
        ask(
            session.listeners,
            [
                {"type": "churn", "stay": plan.stay, "until": until, "slots": plan.slots, "seed": i}
                for i in range(len(session.listeners))
            ],
            10.0,
        )
    m_before = scrape(session.metrics_url)
    window = measure_window(session, progress, plan.seconds)
    m_after = scrape(session.metrics_url)
    result["window"] = window
    us_per_packet = window["server_cpu_us_per_packet_out"]
    if us_per_packet:  # what forwarding to those already in cost during the joins, taken out
        joining = result["joining"]
        net = joining["server_cpu_ms_per_join"] - out_during * us_per_packet / 1000.0 / joined
        joining["server_cpu_ms_per_join_net_of_forwarding"] = round(net, 2)
    if plan.scenario == "churn":
        replies = reports(session)
        result["churn"] = join_summary(replies[len(session.publishers) :]) | {
            "server_rss_mb_before": round(
                m_before["podium_process_resident_memory_bytes"] / 1e6, 1
            ),
            "server_rss_mb_after": round(m_after["podium_process_resident_memory_bytes"] / 1e6, 1),
        }
    # -- drain: publishers stop, totals settle, then compare with the server -------
    ask(session.publishers, [{"type": "quiet"}] * len(session.publishers), 10.0)
    previous = -1
    for _ in range(30):
        time.sleep(0.5)
        replies = reports(session)
        total = sum(int(r["received_total"]) for r in replies[len(session.publishers) :])
        if total == previous:
            break
        previous = total
    final = scrape(session.metrics_url)
    progress.done()
    result["totals"] = {
        "packets_sent_by_publishers": sum(
            int(r["sent"]) for r in replies[: len(session.publishers)]
        ),
        "packets_received_by_listeners": previous,
        "server_packets_in": final.get("podium_packets_in_total"),
        "server_packets_out": final.get("podium_packets_out_total"),
        "server_dropped": labelled(final, "podium_packets_dropped_total"),
        "server_signaling_errors": labelled(final, "podium_signaling_errors_total"),
        "server_rss_mb": round(final["podium_process_resident_memory_bytes"] / 1e6, 1),
        "server_cpu_s": final["podium_process_cpu_seconds_total"],
    }
    errors: Counter[str] = Counter()
    for r in replies:
        errors.update(r["errors"])
    result["errors"] = dict(errors)
    result["broken"] = broken_limits(window, args.max_loss, args.max_p99_ms)
    if errors:
        result["broken"].append(f"errors: {dict(errors)}")
    result["ok"] = not result["broken"]
    return result


def server_join_p99(values: dict[str, float]) -> float | None:
    """p99 of the server's own join histogram (bucket upper bound), in seconds."""
    return server_quantile({}, values, "podium_join_duration_seconds", 0.99)


def server_quantile(
    before: dict[str, float], after: dict[str, float], name: str, q: float
) -> float | None:
    """A quantile (bucket upper bound) of a server histogram between two scrapes."""
    prefix = f"{name}_bucket{{"
    buckets = sorted(
        (float(k.split("le=")[1].rstrip("}")), v - before.get(k, 0.0))
        for k, v in after.items()
        if k.startswith(prefix)
    )
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    for le, cumulative in buckets:
        if cumulative >= q * total:
            return float(le)
    return None


def find_capacity(session: LoadSession, progress: Progress) -> Message:
    """Grow the audience until loss or p99 latency breaks the limits; bisect the last step."""
    plan, args = session.plan, session.args
    steps: list[Message] = []
    good, bad = 0, 0
    target = args.start
    while True:
        live = reports(session)[len(session.publishers) :]
        session.placed = [int(r["listeners"]) for r in live]  # those dropped are gone
        size = sum(session.placed) // plan.rooms  # listeners per room now in
        if target > size:
            starts = [
                time.monotonic() + 0.5 + i / plan.join_rate
                for i in range((target - size) * plan.rooms)
            ]
            add_listeners(session, target - size, starts)
        elif target < size:
            remove_listeners(session, (size - target) * plan.rooms)
        size = target
        wait_joined(session, progress, size * plan.rooms, args.join_timeout + 30)
        time.sleep(args.settle)
        window = measure_window(session, progress, plan.seconds)
        ok = held(window, args.max_loss, args.max_p99_ms)
        if not ok and args.confirm:  # one more window before believing a failure
            window = measure_window(session, progress, plan.seconds)
            ok = held(window, args.max_loss, args.max_p99_ms)
        window.pop("per_second")
        steps.append({"listeners_per_room": size, "held": ok, **window})
        log_line(
            f"audience {size * plan.rooms}: loss {window['loss']:.3%}, p99"
            f" {window['latency_ms']['p99']} ms, server CPU {window['server_cpu_share']:.0%}"
            f", clients {window['client_cpu_share']:.2f} cores -> {'held' if ok else 'FAILED'}"
        )
        if ok:
            good = max(good, size)
        else:
            bad = size if bad == 0 else min(bad, size)
        if bad == 0:
            if size >= args.max_listeners:
                break
            target = min(args.max_listeners, max(size + 1, math.ceil(size * args.growth)))
        else:
            if bad - good <= max(1, round(args.resolution * bad)):
                break
            target = (good + bad) // 2 if good else max(1, bad // 2)
            if target in (good, bad) or target <= 0:
                break
    best = max((s for s in steps if s["held"]), key=lambda s: s["listeners"], default=None)
    result: Message = {"steps": steps, "limited_by": "max_listeners" if bad == 0 else "limits"}
    if best is not None:
        per = best["server_cpu_s_per_listener_s"]
        result |= {
            "max_audience": best["listeners"],
            "at_max": best,
            "server_cpu_s_per_listener_s": per,
            "listeners_per_server_core": round(1 / per) if per else None,
            "marginal_server_cpu_s_per_listener_s": marginal_cost(steps),
        }
        result["listeners_per_server_core_marginal"] = (
            round(1 / result["marginal_server_cpu_s_per_listener_s"])
            if result["marginal_server_cpu_s_per_listener_s"]
            else None
        )
    return result


def marginal_cost(steps: Sequence[Message]) -> float | None:
    """Least-squares slope of server CPU share against listeners: the cost of one more."""
    points = [
        (float(s["listeners"]), float(s["server_cpu_share"])) for s in steps if s["listeners"]
    ]
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return round(sum((x - mx) * (y - my) for x, y in points) / sxx, 7)


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------
def table_rows(result: Message) -> Iterator[tuple[str, str]]:
    plan = result["plan"]
    yield (
        "scenario",
        f"{plan['scenario']}: {plan['rooms']} room(s) x ({plan['speakers']} speakers"
        f" + {plan['listeners']} listeners), talk {plan['talk']}",
    )
    if "capacity" in result:
        cap = result["capacity"]
        for step in cap["steps"]:
            yield (
                f"audience {step['listeners']}",
                f"{'held' if step['held'] else 'FAILED'}: loss {step['loss']:.3%}, latency p50/p99"
                f" {step['latency_ms']['p50']}/{step['latency_ms']['p99']} ms, server CPU"
                f" {step['server_cpu_share']:.0%} (loop lag p99 ≤"
                f" {step['server_loop_lag_p99_ms']} ms),"
                f" clients {step['client_cpu_share']:.2f} cores,"
                f" machine {step['machine_cpu_busy']:.0%} busy",
            )
        yield ("largest audience that held", str(cap.get("max_audience", "none")))
        if cap.get("server_cpu_s_per_listener_s"):
            yield (
                "server CPU-s per listener-s",
                f"{cap['server_cpu_s_per_listener_s']} (≈ {cap['listeners_per_server_core']}"
                f" listeners per core; marginal {cap['marginal_server_cpu_s_per_listener_s']}"
                f" ≈ {cap['listeners_per_server_core_marginal']})",
            )
        return
    w, j = result["window"], result["joining"]
    yield (
        "listeners connected",
        f"{w['listeners']} (without audio: {w['listeners_without_audio']})",
    )
    yield (
        "packets delivered / expected",
        f"{w['delivered_packets']} / {w['expected_packets']}"
        + (f" (loss {w['loss']:.3%})" if w["loss"] is not None else ""),
    )
    lat = w["latency_ms"]
    yield (
        "latency p50 / p95 / p99 / max ms",
        f"{lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']}"
        f" ({w['latency_samples']} samples)",
    )
    yield (
        "join time p50 / p99 ms",
        f"{j['join_ms_p50']} / {j['join_ms_p99']} (first audio {j['first_audio_ms_p50']}"
        f" / {j['first_audio_ms_p99']})",
    )
    yield (
        "joins: rate/s, server CPU ms per join",
        f"{j['rate_per_s']}, {j['server_cpu_ms_per_join']}",
    )
    if "churn" in result:
        c = result["churn"]
        yield (
            "churn: joins (all), join p99 ms, RSS MB",
            f"{c['joins']}, {c['join_ms_p99']}, {c['server_rss_mb_before']}"
            f" -> {c['server_rss_mb_after']}",
        )
    yield (
        "server CPU (share of a core)",
        f"{w['server_cpu_share']:.1%}; {w['server_cpu_s_per_listener_s']} CPU-s per listener-s;"
        f" {w['server_cpu_us_per_packet_out']} µs per packet out",
    )
    yield ("server RSS MB", str(w["server_rss_mb"]))
    yield (
        "server loop lag p99 / fan-out p99 ms",
        f"≤ {w['server_loop_lag_p99_ms']} / ≤ {w['server_forward_p99_ms']} (bucket bounds)",
    )
    t = result["totals"]
    yield (
        "packets: sent / server in / out / received",
        f"{t['packets_sent_by_publishers']} / {t['server_packets_in']:.0f} /"
        f" {t['server_packets_out']:.0f} / {t['packets_received_by_listeners']}",
    )
    yield ("server drops", json.dumps(t["server_dropped"]) if t["server_dropped"] else "none")
    errors = {
        **result["errors"],
        **{f"server:{k}": v for k, v in t["server_signaling_errors"].items()},
    }
    yield ("errors", json.dumps(errors) if errors else "none")
    yield (
        "CPU cores: clients; machine busy",
        f"{w['client_cpu_share']:.2f}; {w['machine_cpu_busy']:.0%}",
    )


def print_table(result: Message) -> None:
    rows = list(table_rows(result))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for warning in warnings(result):
        print(f"warning: {warning}")


def warnings(result: Message) -> list[str]:
    found = []
    windows = result.get("capacity", {}).get("steps", []) or [result.get("window", {})]
    nproc = result["machine"]["nproc"] or 1
    for w in windows:
        if w and w.get("machine_cpu_busy", 0) > 0.95:
            found.append(
                f"the machine was {w['machine_cpu_busy']:.0%} busy at {w['listeners']} listeners:"
                " clients and server competed for CPU, latency includes the clients' own lag"
            )
            break
    if nproc <= 2 and windows and windows[-1]:
        found.append(
            "load generator and server share a small machine: run the generator elsewhere"
            " (same host for all clients) for figures that describe the server alone"
        )
    return found


def plot(result: Message, path: Path) -> None:
    import matplotlib  # type: ignore[import-not-found,unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    samples = result["server_samples"]
    if len(samples) > 1:
        t0 = samples[0]["t"]
        xs = [(a["t"] - t0) for a in samples[1:]]
        cpu = [
            (b["server_cpu_s"] - a["server_cpu_s"]) / max(1e-9, b["t"] - a["t"])
            for a, b in itertools.pairwise(samples)
        ]
        axes[0][0].plot(xs, cpu)
        axes[0][0].set_title("server CPU (cores)")
        axes[0][0].set_xlabel("s")
        axes[0][1].plot(xs, [b["rss_mb"] for b in samples[1:]])
        axes[0][1].set_title("server RSS (MB)")
        axes[0][1].set_xlabel("s")
    if "capacity" in result:
        steps = sorted(result["capacity"]["steps"], key=lambda s: s["listeners"])
        xs2 = [s["listeners"] for s in steps]
        axes[1][0].plot(xs2, [s["latency_ms"]["p99"] for s in steps], "o-", label="p99")
        axes[1][0].plot(xs2, [s["latency_ms"]["p50"] for s in steps], "o-", label="p50")
        axes[1][0].axhline(result["limits"]["p99_ms"], color="red", linestyle=":", label="limit")
        axes[1][0].set_yscale("log")
        axes[1][0].set_title("one-way latency (ms) vs audience")
        axes[1][0].legend()
        axes[1][1].plot(xs2, [100 * (s["loss"] or 0) for s in steps], "o-")
        axes[1][1].set_title("loss (%) vs audience")
    else:
        series = result["window"]["per_second"]
        secs = [s["second"] for s in series]
        axes[1][0].plot(secs, [s["p99_ms"] for s in series], label="p99")
        axes[1][0].plot(secs, [s["p50_ms"] for s in series], label="p50")
        axes[1][0].set_title("one-way latency (ms), measurement window")
        axes[1][0].legend()
        axes[1][1].plot(secs, [s["packets"] for s in series])
        axes[1][1].set_title("packets received per second")
    fig.suptitle(result["command"].split(" -m ")[-1], fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    log_line(f"wrote {path}")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
SCENARIO_DEFAULTS = {
    "room": {"speakers": 3, "listeners": 100, "rooms": 1},
    "rooms": {"speakers": 2, "listeners": 10, "rooms": 10},
    "storm": {"speakers": 1, "listeners": 100, "rooms": 1},
    "churn": {"speakers": 1, "listeners": 50, "rooms": 1},
}


def make_plan(args: argparse.Namespace) -> Plan:
    defaults = SCENARIO_DEFAULTS[args.scenario]
    return Plan(
        scenario=args.scenario,
        rooms=args.rooms if args.rooms is not None else defaults["rooms"],
        speakers=args.speakers if args.speakers is not None else defaults["speakers"],
        listeners=args.listeners if args.listeners is not None else defaults["listeners"],
        seconds=args.seconds,
        join_rate=args.join_rate,
        join_window=args.join_window,
        stay=args.stay,
        talk=args.talk,
        slots=args.slots,
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description="Podium load generator: rooms of speakers and listeners, with a capacity"
        " search. Loss, one-way latency, join times; server CPU/RSS from /metrics.",
        epilog="exit status: 0 the run held its limits (a capacity search: it completed);"
        " 1 a limit was broken or clients failed (each named on stderr and in the JSON's"
        " 'broken'); 2 a bad command line",
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIO_DEFAULTS), default="room")
    parser.add_argument("--rooms", type=int, help="rooms (scenario 'rooms': default 10)")
    parser.add_argument("--speakers", type=int, help="speakers per room")
    parser.add_argument("--listeners", type=int, help="listeners per room")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument(
        "--talk",
        choices=("constant", "turns", "random"),
        default="constant",
        help="speakers' pattern: all the time, 4 s round-robin turns, or random spurts",
    )
    parser.add_argument("--join-rate", type=float, default=50.0, help="listener joins per second")
    parser.add_argument(
        "--join-window", type=float, default=5.0, help="storm: every listener joins within this"
    )
    parser.add_argument("--stay", type=float, default=10.0, help="churn: mean seconds per visit")
    parser.add_argument("--slots", type=int, default=3, help="receive slots per listener")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--plot", type=Path, help="write PNG plots here (needs [bench] extra)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("--seed", type=int, default=1)
    target = parser.add_argument_group("a deployed server (default: start one on loopback)")
    target.add_argument("--url", help="the server's WebSocket URL, e.g. ws://sfu:7880/rtc")
    target.add_argument("--api-key", default=os.environ.get("PODIUM_API_KEY"))
    target.add_argument("--api-secret", default=os.environ.get("PODIUM_API_SECRET"))
    target.add_argument("--metrics-url", help="its /metrics (default: the --url's host and port)")
    target.add_argument(
        "--client-address",
        action="append",
        help="ICE address(es) the clients gather (default 'auto': this host's interfaces)",
    )
    target.add_argument(
        "--server-module", default="signaling.server.cli", help="module run as the local server"
    )
    cap = parser.add_argument_group("capacity search")
    cap.add_argument("--find-capacity", action="store_true")
    cap.add_argument("--start", type=int, default=25, help="first audience per room")
    cap.add_argument("--growth", type=float, default=1.5, help="audience factor per step")
    cap.add_argument("--max-listeners", type=int, default=2000, help="per room")
    cap.add_argument(
        "--resolution", type=float, default=0.1, help="stop bisecting within this fraction"
    )
    cap.add_argument("--confirm", action="store_true", help="re-measure a failed step once")
    cap.add_argument("--settle", type=float, default=2.0, help="seconds between joins and window")
    parser.add_argument("--max-loss", type=float, default=LOSS_LIMIT, help="loss limit (ratio)")
    parser.add_argument("--max-p99-ms", type=float, default=P99_LIMIT_MS, help="p99 limit")
    parser.add_argument("--workers", type=int, default=0, help="listener processes")
    parser.add_argument("--join-timeout", type=float, default=30.0)
    parser.add_argument(
        "--thin-listeners",
        action="store_true",
        help="count RTP off recvmmsg (benchmarks/thin_listener.py): latency from SRTP samples",
    )
    args = parser.parse_args(argv)
    args.argv = list(argv)
    args.capacity_max_factor = 1.0
    if args.find_capacity:
        args.listeners = args.listeners or args.start
        args.capacity_max_factor = min(args.max_listeners, 400) / max(1, args.listeners)
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        parser.error(
            "--plot needs matplotlib: pip install 'podium-sfu[bench]' (or leave --plot out)"
        )
    if args.url and not (args.api_key and args.api_secret):
        parser.error("--url needs --api-key and --api-secret (or PODIUM_API_KEY/SECRET)")
    if args.seconds <= 0 or args.join_rate <= 0:
        parser.error("--seconds and --join-rate must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    result = run(args)
    print_table(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        log_line(f"wrote {args.json}")
    if args.plot is not None:
        plot(result, args.plot)
    for reason in result.get("broken", ()):
        log_line(f"limit broken: {reason}")
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
