"""Forwarding benchmark: one speaker, N listeners, a real Podium server process.

Run from the repository root::

    python -m benchmarks.forwarding --listeners 200 --seconds 15 \\
        --json bench-results/forwarding-200.json

The server runs as its own process (``python -m signaling.server.cli serve --dev``) so
that its CPU time and RSS can be read from ``/proc`` without the load
generators' cost mixed in.  Listeners are spread over worker processes.  By
default they are thin (``benchmarks/thin_listener.py``: ICE and DTLS by aiortc,
then RTP counted from its clear header off ``recvmmsg``, SRTP verified on a
sample), so two cores can drive far more listeners than the server needs;
``--listener aiortc`` counts in the aiortc client's ``on_packet`` tap instead
(no jitter buffer, no decode: a decoding client would cost ~5x more again).

Every listener joins before the speaker starts, so each should receive every
RTP packet the speaker sends.  The speaker stops sending when the measurement
window closes, the listeners drain, and ``delivered_ratio`` compares exact
totals; counting by arrival time inside the window would also charge the server
for the clients' own event-loop lag on a shared 2-core box (that count is
reported too, as ``packets_received_in_window``).  The window's bounds are
``time.monotonic`` values (system-wide on Linux) every process is told ahead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import multiprocessing
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

from benchmarks import common
from benchmarks.common import (
    EXIT_CODES,
    HOST,
    Message,
    Worker,
    ask,
    collect,
    cpu_list,
    cpu_model,
    cpu_seconds,
    cpu_times,
    exit_status,
    free_port,
    labelled,
    machine_ticks,
    percentile,
    rss_mb,
    scrape,
    serve_commands,
    server_command,
    shutdown,
    sleep_until,
    spawn,
    start_server,
    versions,
    wait_healthy,
)

log_line = functools.partial(common.log_line, "forwarding")

ROOM = "bench"
SAMPLE_RATE = 48_000
MAX_LISTENERS_PER_WORKER = {"aiortc": 150, "thin": 600}  # ≤ ~40 % of a core each

TARGET_CPU_US_PER_PACKET = 20.0
TARGET_RSS_MB_PER_LISTENER = 0.3
TARGET_DELIVERED_RATIO = 0.99


# ---------------------------------------------------------------------------
# Client worker processes (speaker or listeners)
# ---------------------------------------------------------------------------
@dataclass
class Window:
    """Measurement window bounds in ``time.monotonic`` seconds; open-ended until set."""

    start: float = math.inf
    end: float = math.inf
    sending: bool = True
    """The speaker drops its RTP once cleared, so listeners can drain to an exact total."""


@dataclass(eq=False)
class ListenerCounts:
    total: int = 0
    in_window: int = 0
    per_slot: list[int] = field(default_factory=list)


def _count_sends(window: Window, sent: list[int]) -> None:
    """Count the speaker's RTP packets by send time (``sent`` = [total, in window]).

    A hook on the transport rather than the sender's counter: the window needs
    send times, and the speaker process has only this one sending transport.
    """
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    original = RTCDtlsTransport._send_rtp

    async def _send_rtp(self: RTCDtlsTransport, data: bytes) -> None:
        if not 192 <= data[1] <= 223:  # aiortc sends RTCP through here too (RFC 5761 demux)
            if not window.sending:
                return
            now = time.monotonic()
            sent[0] += 1
            if window.start <= now < window.end:
                sent[1] += 1
        await original(self, data)

    RTCDtlsTransport._send_rtp = _send_rtp  # type: ignore[method-assign]


def worker_main(
    role: str,
    url: str,
    secret: str,
    nice: int,
    uvloop_ok: bool,
    thin: bool,
    commands: Connection,
    results: Connection,
) -> None:
    """Process entry point: run one client worker until told to stop."""
    if nice:
        os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and kills us
    if uvloop_ok and not thin:  # thin listeners take sockets off asyncio's selector loop
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
    asyncio.run(_worker(role, url, secret, commands, results, thin))


async def _worker(
    role: str, url: str, secret: str, commands: Connection, results: Connection, thin: bool
) -> None:
    from benchmarks.thin_listener import ThinListener, ThinReceiver
    from signaling.client.client import PodiumClient
    from signaling.client.tracks import ToneTrack
    from signaling.server.dev import DEV_API_KEY
    from signaling.wire.tokens import mint_token

    window = Window()
    sent = [0, 0]
    clients: list[PodiumClient] = []
    counts: list[ListenerCounts] = []
    receiver = ThinReceiver() if thin else None
    thins: list[tuple[ListenerCounts, ThinListener]] = []
    if role == "speaker":
        _count_sends(window, sent)

    def packet_counter(entry: ListenerCounts) -> Callable[[int, Any], None]:
        def on_packet(slot: int, _packet: Any) -> None:
            now = time.monotonic()
            entry.total += 1
            if window.start <= now < window.end:
                entry.in_window += 1
                entry.per_slot[slot] += 1

        return on_packet

    async def join(identity: str, slots: int) -> float:
        started = time.monotonic()
        token = mint_token(
            DEV_API_KEY,
            secret,
            identity=identity,
            room=ROOM,
            role="speaker" if role == "speaker" else "listener",
        )
        if role == "speaker":
            client = await PodiumClient.connect(
                url,
                token,
                publish=ToneTrack(440.0),
                host_addresses=[HOST],
                timeout=30.0,
                tune_process=True,
            )
        else:
            entry = ListenerCounts(per_slot=[0] * slots)
            client = await PodiumClient.connect(
                url,
                token,
                on_packet=packet_counter(entry),
                host_addresses=[HOST],
                timeout=30.0,
                tune_process=True,
            )
        clients.append(client)
        await client.wait_connected(timeout=30.0)
        if role != "speaker":
            if receiver is not None:  # it counts for itself (window by kernel arrival time)
                thins.append((entry, receiver.attach(client)))
            counts.append(entry)
        return (time.monotonic() - started) * 1000.0

    async def join_all(command: Message) -> Message:
        outcomes = await asyncio.gather(
            *(join(identity, command["slots"]) for identity in command["identities"]),
            return_exceptions=True,
        )
        return {
            "type": "joined",
            "join_ms": [o for o in outcomes if isinstance(o, float)],
            "errors": [repr(o) for o in outcomes if isinstance(o, BaseException)],
        }

    async def leave(command: Message) -> Message:  # warm-up: leave everything joined so far
        for client in clients:
            await client.leave()
        clients.clear()
        counts.clear()
        thins.clear()
        return {"type": "left"}

    async def quiet(command: Message) -> Message:
        window.sending = False
        return {"type": "quiet", "sent_total": sent[0]}

    async def set_window(command: Message) -> Message:
        window.start, window.end = command["start"], command["end"]
        if receiver is not None:
            receiver.window = (window.start, window.end)
        return {"type": "window_set"}

    async def report(command: Message) -> Message:
        for entry, listener in thins:
            entry.total, entry.in_window = listener.packets, listener.in_window
            entry.per_slot[:] = listener.per_slot[: len(entry.per_slot)]
        per_slot = [sum(s) for s in zip(*(c.per_slot for c in counts), strict=True)]
        return {
            "type": "report",
            "sent_total": sent[0],
            "sent_in_window": sent[1],
            "received_total": sum(c.total for c in counts),
            "received_in_window": sum(c.in_window for c in counts),
            "per_listener_total": [c.total for c in counts],
            "per_slot_in_window": per_slot if counts else [],
            "connected": sum(
                1 for c in clients if c.pc is not None and c.pc.connectionState == "connected"
            ),
            "srtp_verified": sum(x.verified for _, x in thins),
            "srtp_auth_failures": sum(x.auth_failures for _, x in thins),
        }

    async def stop(command: Message) -> Message:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        return {"type": "stopped"}

    handlers = {"join": join_all, "leave": leave, "quiet": quiet, "window": set_window}
    await serve_commands(commands, results, handlers | {"report": report, "stop": stop})


# ---------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------
def start_worker(ctx: Any, role: str, url: str, secret: str, args: argparse.Namespace) -> Worker:
    thin = role == "listener" and args.listener == "thin"
    return spawn(
        ctx,
        worker_main,
        (role, url, secret, args.client_nice, not args.no_uvloop, thin),
        args.client_cpus,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure; the server's log is kept (and named) only if something fails."""
    with tempfile.NamedTemporaryFile(prefix="podium-bench-", suffix=".log", delete=False) as log:
        try:
            result = measure(args, log)
        except BaseException:
            log_line(f"server log kept in {log.name}")
            raise
    os.unlink(log.name)
    return result


def measure(args: argparse.Namespace, log: IO[bytes]) -> dict[str, Any]:
    from signaling.server.dev import DEV_API_SECRET

    n, seconds = args.listeners, args.seconds
    workers_n = args.workers or max(1, math.ceil(n / MAX_LISTENERS_PER_WORKER[args.listener]))
    port = free_port()
    url = f"ws://{HOST}:{port}/rtc"
    server_cmd = server_command(
        args.server_module, port, args.slots, "--media-mode", args.media_mode
    )
    server = start_server(server_cmd, log)
    ctx = multiprocessing.get_context("spawn")
    workers: list[Worker] = []
    try:
        if args.server_cpus:
            os.sched_setaffinity(server.pid, args.server_cpus)
        wait_healthy(port, server, 30.0)
        speaker = start_worker(ctx, "speaker", url, DEV_API_SECRET, args)
        listeners = [
            start_worker(ctx, "listener", url, DEV_API_SECRET, args) for _ in range(workers_n)
        ]
        workers = [speaker, *listeners]
        for worker, ready in zip(workers, collect(workers, 60.0), strict=True):
            worker.pid = ready["pid"]
        log_line(f"server pid {server.pid} on {url}; {workers_n} listener worker(s)")

        cold_rss = rss_mb(server.pid)
        if args.warmup:  # one join + leave, so lazy imports/first allocations are not per-listener
            warm = ask(
                listeners[:1],
                [{"type": "join", "identities": ["warmup"], "slots": args.slots}],
                60.0,
            )[0]
            if warm["errors"]:
                raise RuntimeError(f"warm-up listener failed to join: {warm['errors'][0]}")
            ask(listeners[:1], [{"type": "leave"}], 30.0)
            time.sleep(1.0)
        base_cpu, base_rss = cpu_seconds(server.pid), rss_mb(server.pid)

        # -- joining phase ---------------------------------------------------
        join_ms: list[float] = []
        errors: list[str] = []
        join_started = time.monotonic()
        identities = [f"listener-{i:04d}" for i in range(n)]
        for first in range(0, n, args.batch):
            batch = identities[first : first + args.batch]
            shares = [batch[i :: len(listeners)] for i in range(len(listeners))]
            assigned = [(w, s) for w, s in zip(listeners, shares, strict=True) if s]
            replies = ask(
                [w for w, _ in assigned],
                [{"type": "join", "identities": s, "slots": args.slots} for _, s in assigned],
                120.0,
            )
            for reply in replies:
                join_ms.extend(reply["join_ms"])
                errors.extend(reply["errors"])
        join_wall = time.monotonic() - join_started
        joined_cpu = cpu_seconds(server.pid)
        time.sleep(args.settle)
        joined_rss = rss_mb(server.pid)
        connected = len(join_ms)
        if not connected:
            raise RuntimeError(f"no listener could join: {errors[0]}")
        log_line(
            f"{connected}/{n} listeners joined in {join_wall:.1f} s"
            + (f"; {len(errors)} failed, first: {errors[0]}" if errors else "")
            + f"; idle for {args.idle_seconds:g} s"
        )
        # Idle window: what N connected peers cost with no media (RTCP, ICE consent, timers).
        idle0 = cpu_seconds(server.pid)
        time.sleep(args.idle_seconds)
        idle_share = (cpu_seconds(server.pid) - idle0) / args.idle_seconds

        # -- speaker, then the measurement window ------------------------------
        speaker_reply = ask(
            [speaker], [{"type": "join", "identities": ["speaker"], "slots": args.slots}], 60.0
        )[0]
        if speaker_reply["errors"]:
            raise RuntimeError(f"speaker failed to join: {speaker_reply['errors'][0]}")
        start = time.monotonic() + args.lead_in
        end = start + seconds
        ask(workers, [{"type": "window", "start": start, "end": end}] * len(workers), 10.0)
        log_line(f"speaker sending; {seconds:g} s window opens in {args.lead_in:g} s")
        sleep_until(start)
        times0, ticks0 = cpu_times(server.pid), machine_ticks()
        client_cpu0 = sum(cpu_seconds(w.pid) for w in workers)
        listener_cpu0 = sum(cpu_seconds(w.pid) for w in listeners)
        profiler = start_profiler(args.py_spy, server.pid, seconds)
        sleep_until(end)
        times1, ticks1 = cpu_times(server.pid), machine_ticks()
        client_cpu1 = sum(cpu_seconds(w.pid) for w in workers)
        listener_cpu1 = sum(cpu_seconds(w.pid) for w in listeners)
        ask([speaker], [{"type": "quiet"}], 10.0)
        reports, drain_s = drain(workers, args.drain_timeout)
        dropped = labelled(scrape(f"http://{HOST}:{port}/metrics"), "podium_packets_dropped_total")
        end_cpu, end_rss = cpu_seconds(server.pid), rss_mb(server.pid)
        if profiler is not None:
            try:
                profiler.wait(timeout=30.0)
            except subprocess.TimeoutExpired:
                profiler.kill()
    finally:
        shutdown(workers, server)

    speaker_packets = int(reports[0]["sent_in_window"])
    speaker_total = int(reports[0]["sent_total"])
    received_total = sum(int(r["received_total"]) for r in reports[1:])
    per_listener = [int(v) for r in reports[1:] for v in r["per_listener_total"]]
    delivered = received_total / (speaker_total * connected) if speaker_total else 0.0
    # Losses are spread over the run, so the window's share is the window's packets x ratio;
    # arrival-time counts would also charge the server for the clients' own event-loop lag.
    forwarded = round(speaker_packets * connected * delivered)
    received_in_window = sum(int(r["received_in_window"]) for r in reports[1:])
    per_slot = [
        sum(col)
        for col in zip(
            *(r["per_slot_in_window"] for r in reports[1:] if r["per_slot_in_window"]), strict=True
        )
    ]
    expected = speaker_packets * connected
    server_user, server_sys = times1[0] - times0[0], times1[1] - times0[1]
    server_cpu = server_user + server_sys
    busy = (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1])
    client_share = (client_cpu1 - client_cpu0) / seconds
    nproc = os.cpu_count() or 1
    net_cpu = max(0.0, server_cpu - idle_share * seconds)
    result: dict[str, Any] = {
        "listeners": n,
        "listeners_connected": connected,
        "join_failures": len(errors),
        "seconds": seconds,
        "workers": workers_n,
        "slots": args.slots,
        "media_mode": args.media_mode,
        "packets_forwarded": forwarded,
        "expected_packets": expected,
        "speaker_packets": speaker_packets,
        "delivered_ratio": round(delivered, 5),
        "min_listener_ratio": round(min(per_listener) / speaker_total, 5)
        if per_listener and speaker_total
        else 0.0,
        "speaker_packets_total": speaker_total,
        "packets_received_total": received_total,
        "packets_received_in_window": received_in_window,
        # Packets a listener missed, against the server's own drop counts: before the
        # pre-roll, the speaker's first packet(s) were dropped as not_selected at every
        # listener (docs/benchmarks.md, "The missing onset packet").
        "missing_per_listener": round((speaker_total * connected - received_total) / connected, 2)
        if connected
        else None,
        "server_dropped": dropped,
        "drain_s": round(drain_s, 2),
        "listeners_connected_at_end": sum(int(r["connected"]) for r in reports[1:]),
        "drain_timed_out": drain_s > args.drain_timeout,
        "packets_per_slot": per_slot,
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_share": round(server_cpu / seconds, 4),
        "server_cpu_sys_fraction": round(server_sys / server_cpu, 3) if server_cpu else None,
        "server_cpu_us_per_packet": round(server_cpu / forwarded * 1e6, 2) if forwarded else None,
        "server_idle_cpu_share": round(idle_share, 4),
        "server_idle_cpu_ms_per_listener_s": round(idle_share / connected * 1000.0, 3)
        if connected
        else None,
        "server_cpu_us_per_packet_net_of_idle": round(net_cpu / forwarded * 1e6, 2)
        if forwarded
        else None,
        "server_rss_mb_cold": round(cold_rss, 1),
        "server_rss_mb_baseline": round(base_rss, 1),
        "server_rss_mb_after_join": round(joined_rss, 1),
        "server_rss_mb_end": round(end_rss, 1),
        "server_rss_mb_per_listener": round((joined_rss - base_rss) / connected, 4)
        if connected
        else None,
        "server_cpu_s_total": round(end_cpu, 2),
        "join_server_cpu_ms": round((joined_cpu - base_cpu) / connected * 1000.0, 2)
        if connected
        else None,
        "join_wall_s": round(join_wall, 2),
        "join_time_p50_ms": round(percentile(join_ms, 50), 1),
        "join_time_p99_ms": round(percentile(join_ms, 99), 1),
        "join_time_max_ms": round(max(join_ms), 1) if join_ms else None,
        "client_cpu_share": round(client_share, 3),
        "listener_kind": args.listener,
        "client_cpu_ms_per_listener_s": round(
            (listener_cpu1 - listener_cpu0) / seconds / connected * 1000.0, 4
        ),
        "srtp_verified": sum(int(r.get("srtp_verified", 0)) for r in reports[1:]),
        "srtp_auth_failures": sum(int(r.get("srtp_auth_failures", 0)) for r in reports[1:]),
        "machine_cpu_busy": round(busy, 3),
        "other_cpu_share": round(max(0.0, busy * nproc - server_cpu / seconds - client_share), 3),
        "client_nice": args.client_nice,
        "targets": {
            "server_cpu_us_per_packet": TARGET_CPU_US_PER_PACKET,
            "server_rss_mb_per_listener": TARGET_RSS_MB_PER_LISTENER,
            "delivered_ratio": TARGET_DELIVERED_RATIO,
        },
        "command": shlex.join([sys.executable, "-m", "benchmarks.forwarding", *args.argv]),
        "server_command": shlex.join(server_cmd),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            **versions(),
        },
        "errors_sample": errors[:5],
    }
    result["warnings"] = contention_warnings(result)
    result["meets_targets"] = {
        "server_cpu_us_per_packet": (result["server_cpu_us_per_packet"] or math.inf)
        <= TARGET_CPU_US_PER_PACKET,
        "server_rss_mb_per_listener": (result["server_rss_mb_per_listener"] or math.inf)
        <= TARGET_RSS_MB_PER_LISTENER,
        "delivered_ratio": result["delivered_ratio"] >= TARGET_DELIVERED_RATIO,
    }
    return result


def contention_warnings(result: dict[str, Any]) -> list[str]:
    """Say when the figures describe the shared box more than the server."""
    warnings = []
    if result["other_cpu_share"] > 0.3:
        warnings.append(
            f"other processes used {result['other_cpu_share']:.2f} cores during the window:"
            " server figures are contended"
        )
    if result["srtp_auth_failures"]:
        warnings.append(
            f"{result['srtp_auth_failures']} sampled packets failed SRTP authentication:"
            " the forwarded stream is broken"
        )
    if result["drain_timed_out"] or result["drain_s"] > 2.0:
        warnings.append(
            f"listeners needed {result['drain_s']} s to catch up after the speaker stopped:"
            " the clients, not the server, were behind (socket buffers may overflow)"
        )
    return warnings


def drain(workers: Sequence[Worker], timeout: float) -> tuple[list[Message], float]:
    """Poll reports until the listeners' totals stop moving (the speaker is quiet by now).

    Returns the last reports and how long draining took: a long drain means the
    clients were processing packets well after they were sent.
    """
    started = time.monotonic()
    previous = -1
    while True:
        time.sleep(0.5)
        reports = ask(workers, [{"type": "report"}] * len(workers), 30.0)
        total = sum(int(r["received_total"]) for r in reports[1:])
        waited = time.monotonic() - started
        if total == previous or waited > timeout:
            return reports, waited
        previous = total


def start_profiler(path: Path | None, pid: int, seconds: float) -> subprocess.Popen[bytes] | None:
    """Sample the server with py-spy over the window (``--py-spy``; it costs CPU too)."""
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    command = ["py-spy", "record", "--pid", str(pid), "--nonblocking", "--rate", "200"]
    command += ["--duration", str(max(1, int(seconds))), "--format", "raw", "--output", str(path)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("listeners (connected)", f"{result['listeners']} ({result['listeners_connected']})"),
        ("window s", result["seconds"]),
        ("speaker packets", result["speaker_packets"]),
        (
            "packets forwarded / expected",
            f"{result['packets_forwarded']} / {result['expected_packets']}",
        ),
        (
            "delivered ratio (min listener)",
            f"{result['delivered_ratio']:.4f} ({result['min_listener_ratio']:.4f})",
        ),
        (
            "missing per listener (server: not_selected)",
            f"{result['missing_per_listener']}"
            f" ({result['server_dropped'].get('not_selected', 0):g})",
        ),
        (
            "received in window (arrival), drain s",
            f"{result['packets_received_in_window']}, {result['drain_s']}",
        ),
        (
            "server CPU s (share of a core)",
            f"{result['server_cpu_s']} ({result['server_cpu_share']:.1%})",
        ),
        (
            "server CPU µs / packet (net of idle)",
            f"{result['server_cpu_us_per_packet']}"
            f" ({result['server_cpu_us_per_packet_net_of_idle']})",
        ),
        ("server idle CPU share, all joined", f"{result['server_idle_cpu_share']:.1%}"),
        (
            "server RSS MB base / joined / end",
            f"{result['server_rss_mb_baseline']} / {result['server_rss_mb_after_join']}"
            f" / {result['server_rss_mb_end']}",
        ),
        ("server RSS MB / listener", result["server_rss_mb_per_listener"]),
        ("join server CPU ms / listener", result["join_server_cpu_ms"]),
        ("join time p50 / p99 ms", f"{result['join_time_p50_ms']} / {result['join_time_p99_ms']}"),
        (
            f"client CPU ms / listener-s ({result['listener_kind']})",
            f"{result['client_cpu_ms_per_listener_s']}"
            f" (SRTP samples verified {result['srtp_verified']},"
            f" failed {result['srtp_auth_failures']})",
        ),
        (
            "CPU cores: clients, other; machine busy",
            f"{result['client_cpu_share']:.2f}, {result['other_cpu_share']:.2f};"
            f" {result['machine_cpu_busy']:.1%}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for run in result.get("runs", []):
        print(
            f"run: {run['server_cpu_us_per_packet']} µs/packet"
            f" ({run['server_cpu_us_per_packet_net_of_idle']} net of idle),"
            f" delivered {run['delivered_ratio']}, other processes {run['other_cpu_share']}"
        )
    for warning in result["warnings"]:
        print(f"warning: {warning}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.forwarding",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=EXIT_CODES,
    )
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help=f"listener processes (default: ≤ {MAX_LISTENERS_PER_WORKER} each)",
    )
    parser.add_argument("--slots", type=int, default=3, help="receive slots per participant")
    parser.add_argument(
        "--listener",
        choices=("thin", "aiortc"),
        default="thin",
        help="thin: RTP counted off recvmmsg, SRTP verified on a sample; aiortc: full clients",
    )
    parser.add_argument(
        "--media-mode",
        choices=("forward", "mix"),
        default="forward",
        help="mix: listeners get the room's mix (one decode, one encode per tick)",
    )
    parser.add_argument(
        "--server-module",
        default="signaling.server.cli",
        help="module run as the server (same CLI): A/B-test a patched server",
    )
    parser.add_argument("--batch", type=int, default=20, help="listeners joining at once")
    parser.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="nice increment for client processes (favours the server)",
    )
    parser.add_argument(
        "--server-cpus", type=cpu_list, default=None, help="pin the server to these CPUs, e.g. 0"
    )
    parser.add_argument(
        "--client-cpus", type=cpu_list, default=None, help="pin the clients to these CPUs, e.g. 1"
    )
    parser.add_argument(
        "--lead-in",
        type=float,
        default=1.0,
        help="seconds the speaker sends before the window opens",
    )
    parser.add_argument(
        "--settle", type=float, default=1.0, help="seconds after the last join before reading RSS"
    )
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the join+leave before the baseline reading",
    )
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio in the clients")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=15.0,
        help="longest wait for listeners to catch up once the speaker stops",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="PATH",
        help="also profile the server over the window (py-spy raw/collapsed stacks)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=3.0,
        help="server CPU is also read over this long with everyone joined and no speaker",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat the whole measurement; report the median run and every run's figures",
    )
    args = parser.parse_args(argv)
    args.argv = list(argv)
    if args.listeners < 1 or args.seconds <= 0 or args.batch < 1 or args.runs < 1:
        parser.error("--listeners, --seconds, --batch and --runs must be positive")
    return args


def median_of_runs(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median CPU per packet, plus every run's headline figures.

    One run on a shared 2-core box moves by ±2 µs per packet at 100 listeners
    (the server idles 90 % of the time, so its few ms bursts meet whatever else
    runs); the median of several is the figure to record.
    """
    ranked = sorted(results, key=lambda r: r["server_cpu_us_per_packet"] or math.inf)
    result = dict(ranked[(len(ranked) - 1) // 2])
    keys = (
        "server_cpu_us_per_packet",
        "server_cpu_us_per_packet_net_of_idle",
        "delivered_ratio",
        "server_rss_mb_per_listener",
        "join_server_cpu_ms",
        "other_cpu_share",
        "client_cpu_ms_per_listener_s",
    )
    result["runs"] = [{k: r[k] for k in keys} for r in results]
    for key in keys[:2]:
        values = [r[key] for r in results if r[key] is not None]
        result[f"{key}_range"] = [min(values), max(values)] if values else None
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results = []
    for i in range(args.runs):
        if args.runs > 1:
            log_line(f"run {i + 1} of {args.runs}")
        results.append(run(args))
    result = results[0] if args.runs == 1 else median_of_runs(results)
    print_table(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        log_line(f"wrote {args.json}")
    return exit_status("forwarding", result["meets_targets"], result, result["targets"])


if __name__ == "__main__":
    sys.exit(main())
