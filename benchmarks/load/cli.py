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
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.load import log_line
from benchmarks.load.orchestrator import LOSS_LIMIT, P99_LIMIT_MS, SCENARIO_DEFAULTS, run
from benchmarks.load.report import plot, print_table


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
