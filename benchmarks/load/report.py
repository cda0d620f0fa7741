"""What a run prints and plots."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import (
    Message,
)
from benchmarks.load import log_line


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
