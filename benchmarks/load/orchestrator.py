"""The orchestrator: a session of server and workers, measurement windows, the capacity search."""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import IO

from benchmarks.common import (
    HOST,
    Message,
    Worker,
    ask,
    collect,
    cpu_model,
    cpu_seconds,
    free_port,
    labelled,
    machine_ticks,
    percentile,
    scrape,
    server_command,
    shutdown,
    spawn,
    start_server,
    versions,
    wait_healthy,
)
from benchmarks.load import log_line
from benchmarks.load.audio import CYCLE, Cycles, encode_cycles, talk_spans
from benchmarks.load.stats import COARSE, LAT_BINS, bin_upper_ms, hist_percentile
from benchmarks.load.worker import Setup, worker_main

LISTENERS_PER_WORKER = 100
PUBLISHERS_PER_WORKER = 40
LOSS_LIMIT = 0.01
P99_LIMIT_MS = 100.0


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
