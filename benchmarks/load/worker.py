"""Worker processes: publishers and listeners, many per process, driven by the orchestrator."""

from __future__ import annotations

import asyncio
import contextlib
import math
import mmap
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import (
    Message,
    serve_commands,
)
from benchmarks.load.audio import CYCLE
from benchmarks.load.stats import COARSE, LAT_BINS, lat_bin
from benchmarks.load.track import CycleTrack, send_levels
from sfu.rtp import PTIME


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
