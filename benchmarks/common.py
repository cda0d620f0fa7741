"""What the benchmarks share: a server in its own process, client worker processes, /proc.

The server runs as ``python -m signaling.server.cli serve --dev`` so that its CPU and
RSS can be read without the load generators' cost mixed in.  Clients run in
worker processes (``spawn``) driven over pipes with small dict messages: the
orchestrator sends a command to each worker and collects one reply from each.
Nothing here imports the server or aiortc, so the orchestrator stays light.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

Message = dict[str, Any]


# ---------------------------------------------------------------------------
# /proc readings (no psutil: the benchmarks add no dependency)
# ---------------------------------------------------------------------------
def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid``, all its threads (10 ms resolution)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``, in seconds."""
    return sum(cpu_times(pid))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs: tells whether the box itself saturated."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return total - idle, total


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 100 samples is the 99th)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def log_line(tag: str, text: str) -> None:
    """One progress line on stderr (stdout may carry the results), tagged by benchmark."""
    print(f"[{tag}] {text}", file=sys.stderr, flush=True)


@dataclass
class LagProbe:
    """How late a 10 ms timer fires: what any packet waiting on the loop waits extra.

    Timed with ``time.monotonic``: uvloop's ``loop.time()`` has millisecond resolution."""

    interval: float = 0.01
    samples: list[float] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.interval)
            self.samples.append(time.monotonic() - start - self.interval)

    def take(self) -> list[float]:
        taken, self.samples = self.samples, []
        return taken


CommandHandler = Callable[[Message], Awaitable[Message]]


async def serve_commands(
    commands: Connection, results: Connection, handlers: Mapping[str, CommandHandler]
) -> None:
    """A worker's one loop: say ready, then answer each command with its handler's reply.

    ``stop`` ends the loop after its handler replied (a worker without one replies
    ``stopped`` at once)."""
    results.send({"type": "ready", "pid": os.getpid()})
    while True:
        command: Message = await asyncio.to_thread(commands.recv)
        kind = command["type"]
        handler = handlers.get(kind)
        if handler is not None:
            results.send(await handler(command))
        elif kind == "stop":
            results.send({"type": "stopped"})
        else:
            results.send({"type": "error", "error": f"unknown command {kind!r}"})
        if kind == "stop":
            return


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


# ---------------------------------------------------------------------------
# Server and worker processes
# ---------------------------------------------------------------------------
def server_command(module: str, port: int, slots: int, *extra: str) -> list[str]:
    """A dev server on loopback (``--dev``: the built-in API key), as a separate process."""
    return [
        sys.executable,
        "-m",
        module,
        "serve",
        "--dev",
        "--host",
        HOST,
        "--port",
        str(port),
        "--announce-address",
        HOST,
        "--slots",
        str(slots),
        "--udp-port",
        "0",
        "--drain-timeout",  # SIGTERM stops at once: a benchmark's clients never leave
        "0",
        "--max-connections-per-address",  # every client comes from the one loopback address
        "1000000",
        *extra,
    ]


def start_server(
    command: Sequence[str], log: IO[bytes], cpus: set[int] | None = None
) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    if cpus:
        os.sched_setaffinity(server.pid, cpus)
    return server


def spawn(
    ctx: Any,
    target: Callable[..., None],
    args: tuple[Any, ...],
    cpus: set[int] | None = None,
) -> Worker:
    """Start ``target(*args, commands, results)`` in a new process."""
    commands_rx, commands_tx = ctx.Pipe(duplex=False)
    results_rx, results_tx = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(*args, commands_rx, results_tx), daemon=True)
    process.start()
    if cpus:
        os.sched_setaffinity(process.pid, cpus)
    return Worker(process, commands_tx, results_rx)


@dataclass(eq=False)
class Worker:
    process: multiprocessing.process.BaseProcess
    commands: Connection
    results: Connection
    pid: int = 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(
    port: int, server: subprocess.Popen[bytes] | None, timeout: float, host: str = HOST
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1.0) as r,
        ):
            if r.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError("server did not become healthy")


def ask(workers: Sequence[Worker], messages: Sequence[Message], timeout: float) -> list[Message]:
    """Send one command to each worker; return their replies in worker order."""
    for worker, message in zip(workers, messages, strict=True):
        worker.commands.send(message)
    return collect(workers, timeout)


def collect(workers: Sequence[Worker], timeout: float) -> list[Message]:
    replies: dict[int, Message] = {}
    by_conn = {id(w.results): i for i, w in enumerate(workers)}
    deadline = time.monotonic() + timeout
    while len(replies) < len(workers):
        remaining = deadline - time.monotonic()
        pending = [w.results for i, w in enumerate(workers) if i not in replies]
        ready = wait(pending, timeout=max(0.0, remaining))
        if not ready:
            raise TimeoutError(f"{len(pending)} worker(s) did not answer in {timeout:.0f} s")
        for conn in ready:
            assert isinstance(conn, Connection)
            try:
                replies[by_conn[id(conn)]] = conn.recv()
            except EOFError as exc:
                raise RuntimeError("a worker process died") from exc
    return [replies[i] for i in range(len(workers))]


def sleep_until(deadline: float) -> None:
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(remaining, 0.5))


def versions() -> dict[str, str]:
    found = {}
    for package in ("aiortc", "aioice", "pylibsrtp", "av", "uvloop", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def shutdown(workers: Sequence[Worker], server: subprocess.Popen[bytes]) -> None:
    """Stop workers (briefly gracefully, then by force) and the server; never raises."""
    live = [w for w in workers if w.process.is_alive()]
    with contextlib.suppress(Exception):
        for w in live:
            w.commands.send({"type": "stop"})
        collect(live, 10.0)
    for w in workers:
        w.process.join(timeout=2.0)
        if w.process.is_alive():
            w.process.kill()
            w.process.join(timeout=2.0)
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5.0)


def cpu_list(text: str) -> set[int]:
    return {int(part) for part in text.split(",") if part}


EXIT_CODES = """exit status: 0 every target met; 1 a target or limit broken (each named on stderr
and in the JSON); 2 a bad command line"""


def exit_status(
    tool: str, met: Mapping[str, bool], figures: Mapping[str, Any], targets: Mapping[str, Any]
) -> int:
    """0 when every target is met; else 1, each broken one named with its figure and target."""
    broken = [name for name, ok in met.items() if not ok]
    for name in broken:
        print(
            f"[{tool}] target broken: {name} = {figures.get(name)} (target {targets.get(name)})",
            file=sys.stderr,
            flush=True,
        )
    return 1 if broken else 0
