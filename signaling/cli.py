"""``podium serve`` and ``podium token``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence

from sfu.config import MediaConfig
from sfu.mixer import MediaMode
from signaling.config import IceServer, RoomSettings, ServerConfig, WebhookConfig
from signaling.roles import Role
from signaling.tokens import ALL_ROOMS, mint_admin_token, mint_token

DEV_API_KEY = "devkey"
DEV_API_SECRET = "devsecret-change-me-0123456789abcdef"  # fixed so dev tokens survive restarts
DEFAULT_PORT = 7880
DEFAULT_UDP_PORT = 7882


def _udp_port(value: str) -> int | None:
    if value.lower() == "none":
        return None
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a UDP port is 0-65535")
    return port


def _credentials(args: argparse.Namespace) -> tuple[str, str]:
    key = args.api_key or os.environ.get("PODIUM_API_KEY")
    secret = args.api_secret or os.environ.get("PODIUM_API_SECRET")
    if getattr(args, "dev", False):
        return key or DEV_API_KEY, secret or DEV_API_SECRET
    if not key or not secret:
        sys.exit(
            "podium: set --api-key/--api-secret (or PODIUM_API_KEY/PODIUM_API_SECRET), or --dev"
        )
    return key, secret


def _serve(args: argparse.Namespace) -> None:
    key, secret = _credentials(args)
    addresses = tuple(args.announce_address or (["auto", "127.0.0.1"] if args.dev else ["auto"]))
    ice = tuple(IceServer(urls=(url,)) for url in args.ice_server or ())
    config = ServerConfig(
        api_keys={key: secret},
        host=args.host or ("127.0.0.1" if args.dev else "0.0.0.0"),
        port=args.port,
        media=MediaConfig(slots=args.slots, announce_addresses=addresses, udp_port=args.udp_port),
        room=RoomSettings(media_mode=args.media_mode),
        recordings_dir=args.recordings_dir,
        ice_servers=ice,
        serve_demo=args.dev,
        webhooks=WebhookConfig(urls=tuple(args.webhook_url or ())),
        metrics_port=args.metrics_port,
        resume_window=args.resume_window,
        max_connections_per_address=args.max_connections_per_address,
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aioice logs every ICE check's state change at INFO: a line per pair per join.
    logging.getLogger("aioice").setLevel(logging.WARNING)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_run(config, dev=args.dev, drain_timeout=args.drain_timeout))


def tune_gc() -> None:
    """Fewer cyclic-GC passes over a server's many long-lived objects.

    What exists once the server has started (modules, the app) lives as long
    as the process: frozen, no collection scans it again.  Per-packet garbage is freed by reference
    counting, so the young generation can grow far past 700 objects before a
    pass is worth it.  Forwarding to 100 listeners: about 2 µs less CPU per
    packet (docs/benchmarks.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


async def _run(config: ServerConfig, dev: bool, drain_timeout: float) -> None:
    from signaling.server import PodiumServer

    server = PodiumServer(config)
    await server.start()
    tune_gc()
    if dev:
        key, secret = next(iter(config.api_keys.items()))
        print(
            f"\nPodium dev server on {server.url}\n"
            f"  demo page:  http://{config.host}:{server.port}/\n"
            f"  API key:    {key}\n  API secret: {secret}\n"
            f"  mint a token: podium token --dev --room demo --identity alice --role host\n",
            flush=True,
        )
    # SIGTERM drains (docs/operations.md); SIGINT, or a second signal, stops at once.
    terminate, interrupt = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, terminate.set)
    loop.add_signal_handler(signal.SIGINT, interrupt.set)
    waits = [asyncio.ensure_future(e.wait()) for e in (terminate, interrupt)]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if terminate.is_set() and not interrupt.is_set() and drain_timeout > 0:
        loop.add_signal_handler(signal.SIGTERM, interrupt.set)
        draining = asyncio.ensure_future(server.drain(drain_timeout))
        await asyncio.wait([draining, waits[1]], return_when=asyncio.FIRST_COMPLETED)
        draining.cancel()
    for wait in waits:
        wait.cancel()
    await server.stop()


def _token(args: argparse.Namespace) -> None:
    key, secret = _credentials(args)
    if args.admin:  # for the server API: one room, or all of them
        print(mint_admin_token(key, secret, room=args.room or ALL_ROOMS, ttl=args.ttl))
        return
    if not args.room or not args.identity:
        sys.exit("podium token: --room and --identity are required (unless --admin)")
    metadata = {
        k: v
        for k, v in (
            ("headline", args.headline),
            ("avatar_url", args.avatar_url),
            ("profile_url", args.profile_url),
        )
        if v
    }
    print(
        mint_token(
            key,
            secret,
            identity=args.identity,
            room=args.room,
            role=args.role,
            name=args.name or args.identity,
            metadata=metadata,
            ttl=args.ttl,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="podium", description="Podium audio-room SFU")
    commands = parser.add_subparsers(dest="command", required=True)

    def credentials(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dev", action="store_true", help="use the built-in dev API key/secret")
        p.add_argument("--api-key")
        p.add_argument("--api-secret")

    serve = commands.add_parser("serve", help="run the server")
    credentials(serve)
    serve.add_argument(
        "--host", help="HTTP/WebSocket bind address (default 0.0.0.0; 127.0.0.1 with --dev)"
    )
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP/WebSocket port")
    serve.add_argument("--slots", type=int, default=3, help="receive slots per participant")
    serve.add_argument(
        "--media-mode",
        choices=list(MediaMode),
        default=MediaMode.FORWARD.value,
        help="rooms forward up to --slots streams, send one mix, or mix when large (auto)",
    )
    serve.add_argument("--recordings-dir", help="hosts may record rooms (Ogg/Opus) into this")
    serve.add_argument(
        "--announce-address",
        action="append",
        help="ICE host candidate address (repeatable; 'auto' = this machine's interfaces)",
    )
    serve.add_argument(
        "--udp-port",
        type=_udp_port,
        default=DEFAULT_UDP_PORT,
        help=f"the one UDP port for all ICE/media (default {DEFAULT_UDP_PORT}; 0: any free port;"
        " 'none': one OS-chosen port per peer connection)",
    )
    serve.add_argument(
        "--ice-server", action="append", help="STUN/TURN URL handed to clients (repeatable)"
    )
    serve.add_argument(
        "--webhook-url", action="append", help="POST room events here (repeatable; docs/api.md)"
    )
    serve.add_argument(
        "--metrics-port", type=int, help="also serve /metrics, /healthz, /readyz on this port"
    )
    serve.add_argument(
        "--resume-window",
        type=float,
        default=30.0,
        help="seconds a participant's seat is held after its connection is lost (0: never)",
    )
    serve.add_argument(
        "--max-connections-per-address",
        type=int,
        default=1000,
        help="open HTTP/WebSocket connections one source address may hold",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM: refuse joins, finish recordings, tell clients, and exit once the rooms"
        " are empty or after this many seconds (0: stop at once)",
    )
    serve.set_defaults(func=_serve)

    token = commands.add_parser("token", help="mint an access token (development)")
    credentials(token)
    token.add_argument(
        "--admin", action="store_true", help="a server-API token (for --room, or every room)"
    )
    token.add_argument("--room")
    token.add_argument("--identity")
    token.add_argument("--name")
    token.add_argument("--role", choices=[r.value for r in Role], default=Role.LISTENER.value)
    token.add_argument("--headline")
    token.add_argument("--avatar-url")
    token.add_argument("--profile-url")
    token.add_argument("--ttl", type=float, default=6 * 3600, help="validity in seconds")
    token.set_defaults(func=_token)

    bench = commands.add_parser(  # every argument goes to benchmarks.load, --help included
        "bench", help="load-test a server (python -m benchmarks.load)", prefix_chars="+"
    )
    bench.add_argument("bench_args", nargs="*")
    bench.set_defaults(func=_bench)
    return parser


def _bench(args: argparse.Namespace) -> None:
    """The load generator lives in the source tree's benchmarks/, not in the wheel."""
    if os.path.isfile(os.path.join("benchmarks", "load.py")):  # run from a checkout
        sys.path.insert(0, os.getcwd())
    try:
        from benchmarks.load import main as bench_main
    except ImportError:
        sys.exit(
            "podium bench: the load generator is in the source tree (benchmarks/load.py);"
            " run it from a checkout: pip install -e '.[bench]' && podium bench --help"
        )
    sys.exit(bench_main(args.bench_args))


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
