"""``podium serve`` and ``podium token``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from sfu.config import MediaConfig
from sfu.mixer import MediaMode
from signaling.room.roles import Role
from signaling.room.settings import RoomSettings
from signaling.server import logs, tls
from signaling.server.cluster.config import ClusterConfig
from signaling.server.config import ServerConfig, WebhookConfig
from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
from signaling.server.turn import DEFAULT_CREDENTIAL_TTL, ice_servers
from signaling.wire.tokens import ALL_ROOMS, mint_admin_token, mint_token

DEFAULT_PORT = 7880
DEFAULT_UDP_PORT = 7882
TOKEN_TTL = 6 * 3600.0
ADMIN_TOKEN_TTL = 600.0  # docs/api.md: keep server-API tokens short-lived


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port (0-65535)")
    return int(value)


def _udp_port(value: str) -> int | None:
    return None if value.lower() == "none" else _port(value)


def _check_serve_inputs(args: argparse.Namespace, addresses: Sequence[str]) -> str | None:
    """What is wrong with options argparse cannot check alone (None when nothing is)."""
    for address in addresses:
        if address != "auto":
            try:
                ipaddress.ip_address(address)
            except ValueError:
                return f"--announce-address takes IP addresses (or 'auto'), not {address!r}"
    for url in args.webhook_url or ():
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            return f"--webhook-url {url!r} is not an http(s) URL"
    recordings = args.recordings_dir
    if recordings:
        try:
            os.makedirs(recordings, exist_ok=True)
        except OSError as exc:
            return f"--recordings-dir {recordings}: {exc.strerror}"
        if not os.access(recordings, os.W_OK | os.X_OK):
            return f"--recordings-dir {recordings} is not writable by this user"
    return None


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


def _env_list(name: str) -> list[str]:
    """A comma- or space-separated list from the environment (containers, systemd units)."""
    return os.environ.get(name, "").replace(",", " ").split()


def _env_port(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    try:
        return _port(value) if value else None
    except argparse.ArgumentTypeError as exc:
        sys.exit(f"podium serve: ${name}: {exc}")


def _workers(value: str) -> int:
    count = (os.cpu_count() or 1) if value == "auto" else int(value)
    if count < 1:
        raise argparse.ArgumentTypeError("--workers is a count of processes, or 'auto'")
    return count


def _serve(args: argparse.Namespace) -> None:
    key, secret = _credentials(args)
    if args.workers is not None:
        if args.redis is None:
            sys.exit("podium: --workers needs --redis (the nodes share rooms through it)")
        sys.exit(_run_workers(args))
    announced = args.announce_address or _env_list("PODIUM_ANNOUNCE_ADDRESS")
    addresses = tuple(announced or (["auto", "127.0.0.1"] if args.dev else ["auto"]))
    host = args.host or ("127.0.0.1" if args.dev else "0.0.0.0")
    args.recordings_dir = args.recordings_dir or os.environ.get("PODIUM_RECORDINGS_DIR") or None
    problem = _check_serve_inputs(args, addresses)
    if problem:
        sys.exit(f"podium serve: {problem}")
    log_format = args.log_format or os.environ.get("PODIUM_LOG_FORMAT") or "text"
    if log_format not in logs.LOG_FORMATS:
        sys.exit(f"podium serve: unknown log format {log_format!r} (text or json)")
    metrics_port = args.metrics_port
    if metrics_port is None:
        metrics_port = _env_port("PODIUM_METRICS_PORT")
    tls_cert, tls_key = args.tls_cert, args.tls_key
    if (tls_cert is None) != (tls_key is None):
        sys.exit("podium serve: --tls-cert and --tls-key go together")
    try:
        ice = ice_servers(
            args.ice_server or _env_list("PODIUM_ICE_SERVERS"),
            username=args.turn_username,
            credential=args.turn_credential or os.environ.get("PODIUM_TURN_CREDENTIAL"),
            secret=args.turn_secret or os.environ.get("PODIUM_TURN_SECRET"),
            credential_ttl=args.turn_ttl,
        )
        media = MediaConfig(slots=args.slots, announce_addresses=addresses, udp_port=args.udp_port)
    except ValueError as exc:
        sys.exit(f"podium serve: {exc}")
    logs.configure(log_format)
    if "auto" in addresses and not args.dev and os.path.exists("/.dockerenv"):
        logging.getLogger("podium").warning(
            "announcing this container's own addresses: clients outside it cannot reach them;"
            " set PODIUM_ANNOUNCE_ADDRESS (or --announce-address) to the host's address"
        )
    if args.dev and tls_cert is None and not tls.is_loopback(host) and not args.no_tls:
        tls_cert, tls_key = (str(p) for p in _dev_certificate(host))
    config = ServerConfig(
        api_keys={key: secret},
        host=host,
        port=args.port,
        media=media,
        room=RoomSettings(media_mode=args.media_mode),
        recordings_dir=args.recordings_dir,
        ice_servers=ice,
        serve_demo=args.dev,
        webhooks=WebhookConfig(urls=tuple(args.webhook_url or ())),
        metrics_port=metrics_port,
        resume_window=args.resume_window,
        max_connections_per_address=args.max_connections_per_address,
        tls_cert=tls_cert,
        tls_key=tls_key,
        cluster=None
        if args.redis is None
        else ClusterConfig(
            redis_url=args.redis,
            node_id=args.node_id,
            relay_host=args.relay_address or ("127.0.0.1" if args.dev else _first_address()),
            relay_port=args.relay_port,
            max_participants=args.max_participants,
            max_cpu=args.max_cpu,
        ),
    )
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_run(config, dev=args.dev, drain_timeout=args.drain_timeout))


def _dev_certificate(host: str) -> tuple[Path, Path]:
    """``--dev`` on a LAN address: browsers give the microphone only to https pages."""
    directory = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "podium"
    cert, key = tls.dev_certificate(directory, tls.machine_names(host))
    print(
        f"\nTLS: a self-signed development certificate, {cert}\n"
        f"  SHA-256 {tls.fingerprint(cert)}\n"
        "  Browsers warn once: check the fingerprint and accept it, or trust the file"
        " (Chromium: Settings > Privacy and security > Security > Manage certificates;"
        " Firefox: about:preferences#privacy > View Certificates > Authorities).\n"
        "  Python clients: PodiumClient.connect(..., ssl=ssl.create_default_context("
        f"cafile='{cert}'))\n"
        "  --no-tls serves plain http instead (no microphone off localhost).\n",
        flush=True,
    )
    return cert, key


def _first_address() -> str:
    from sfu.rtc.setup import host_addresses

    return next(iter(host_addresses()), "127.0.0.1")


def _run_workers(args: argparse.Namespace) -> int:
    """``--workers N``: N nodes of one cluster on this machine, each its own process.

    Node i (from 0) serves signaling on ``--port`` + i and media on ``--udp-port`` + i
    (0 and none stay as they are), its relay on ``--relay-port`` + i when that is set,
    metrics on ``--metrics-port`` + i, node id ``--node-id``-i when one is given.  The
    parent only starts them, passes SIGINT and SIGTERM on, and waits: any node can serve
    any room, so a platform may hand clients any node's URL (``GET /v1/nodes`` lists them).
    """
    argv = _without_workers(args.argv)
    children = []
    for i in range(args.workers):
        extra = ["--port", str(args.port + i)]
        if args.udp_port:
            extra += ["--udp-port", str(args.udp_port + i)]
        if args.relay_port:
            extra += ["--relay-port", str(args.relay_port + i)]
        if args.metrics_port:
            extra += ["--metrics-port", str(args.metrics_port + i)]
        if args.node_id:
            extra += ["--node-id", f"{args.node_id}-{i}"]
        command = [sys.executable, "-m", "signaling.server.cli", *argv, *extra]
        children.append(subprocess.Popen(command))

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [child.wait() for child in children]
    return max(128 - code if code < 0 else code for code in codes)  # killed: 128 + signal


def _without_workers(argv: Sequence[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            kept.append(arg)
    return kept


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
    from signaling.server.server import PodiumServer

    # SIGTERM drains (docs/operations.md); SIGINT, or a second signal, stops at once.
    # Installed before start: a cluster node registered is stoppable.
    terminate, interrupt = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, terminate.set)
    loop.add_signal_handler(signal.SIGINT, interrupt.set)
    try:
        server = PodiumServer(config)  # reads the TLS certificate
    except OSError as exc:
        sys.exit(
            f"podium serve: cannot load the TLS certificate {config.tls_cert}"
            f" (key {config.tls_key}): {exc}"
        )
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        sys.exit(f"podium serve: {_bind_error(exc)}")
    tune_gc()
    if dev:
        key, secret = next(iter(config.api_keys.items()))
        scheme = "http" if config.tls_cert is None else "https"
        hosts = tls.reachable_addresses(config.host)
        pages = " ".join(f"{scheme}://{host}:{server.port}/" for host in hosts)
        print(
            f"\nPodium dev server on {server.url}\n"
            f"  demo page:  {pages}\n"
            f"  API key:    {key}\n  API secret: {secret}\n"
            f"  mint a token: podium token --dev --room demo --identity alice --role host\n",
            flush=True,
        )
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


def _bind_error(exc: OSError) -> str:
    """One line for a listener that could not be opened (uvloop hides the errno in the cause)."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else None
    code = exc.errno if exc.errno is not None else (cause.errno if cause else None)
    text = str(exc) if cause is None else f"{exc}: {cause.strerror}"
    if code == errno.EADDRINUSE:
        return f"{text} (another process has it: stop it, or choose another --port/--udp-port)"
    if code == errno.EADDRNOTAVAIL:
        return f"{text} (not an address of this machine: check --host)"
    return text


def _token(args: argparse.Namespace) -> None:
    key, secret = _credentials(args)
    if args.admin:  # for the server API: one room, or all of them
        ttl = ADMIN_TOKEN_TTL if args.ttl is None else args.ttl
        print(mint_admin_token(key, secret, room=args.room or ALL_ROOMS, ttl=ttl))
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
            ttl=TOKEN_TTL if args.ttl is None else args.ttl,
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
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, help="HTTP/WebSocket port")
    serve.add_argument("--slots", type=int, default=3, help="receive slots per participant")
    serve.add_argument(
        "--media-mode",
        choices=[mode.value for mode in MediaMode],
        default=MediaMode.FORWARD.value,
        help="rooms forward up to --slots streams, send one mix, or mix when large (auto)",
    )
    serve.add_argument(
        "--recordings-dir",
        help="hosts may record rooms (Ogg/Opus) into this (or $PODIUM_RECORDINGS_DIR)",
    )
    serve.add_argument(
        "--announce-address",
        action="append",
        help="ICE host candidate address (repeatable; 'auto' = this machine's interfaces;"
        " or $PODIUM_ANNOUNCE_ADDRESS, comma-separated)",
    )
    serve.add_argument(
        "--udp-port",
        type=_udp_port,
        default=DEFAULT_UDP_PORT,
        help=f"the one UDP port for all ICE/media (default {DEFAULT_UDP_PORT}; 0: any free port;"
        " 'none': one OS-chosen port per peer connection)",
    )
    serve.add_argument(
        "--ice-server",
        action="append",
        help="STUN/TURN URL handed to clients (repeatable): stun:HOST:PORT, turn:HOST:PORT"
        "[?transport=tcp], turns:HOST:PORT; turn URLs need --turn-secret or --turn-username"
        " (or $PODIUM_ICE_SERVERS, comma-separated)",
    )
    serve.add_argument(
        "--turn-secret",
        help="coturn's static-auth-secret (use-auth-secret): each join gets its own"
        " time-limited TURN credential (or $PODIUM_TURN_SECRET)",
    )
    serve.add_argument(
        "--turn-ttl",
        type=float,
        default=DEFAULT_CREDENTIAL_TTL,
        help="validity of those credentials in seconds (default one day; they must outlast"
        " a session)",
    )
    serve.add_argument("--turn-username", help="static TURN username handed to every client")
    serve.add_argument(
        "--turn-credential", help="static TURN password (or $PODIUM_TURN_CREDENTIAL)"
    )
    serve.add_argument("--tls-cert", help="PEM certificate (chain): serve https and wss")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument(
        "--no-tls",
        action="store_true",
        help="--dev off loopback: plain http, no self-signed certificate",
    )
    serve.add_argument(
        "--log-format",
        choices=logs.LOG_FORMATS,
        help="text (default), or JSON lines (or $PODIUM_LOG_FORMAT)",
    )
    serve.add_argument(
        "--webhook-url", action="append", help="POST room events here (repeatable; docs/api.md)"
    )
    serve.add_argument(
        "--metrics-port",
        type=_port,
        help="also serve /metrics, /healthz, /readyz on this port (or $PODIUM_METRICS_PORT)",
    )
    serve.add_argument(
        "--redis",
        help="cluster mode: redis://HOST:PORT/DB shared by every node (docs/cluster.md)",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        help="start N cluster nodes on this machine ('auto': one per core); needs --redis",
    )
    serve.add_argument("--node-id", help="this node's id in the cluster (default: host-pid-random)")
    serve.add_argument(
        "--relay-address",
        help="address other nodes send relayed media to (default: this machine's first)",
    )
    serve.add_argument(
        "--relay-port", type=int, default=0, help="UDP port of the relay (default: any free one)"
    )
    serve.add_argument(
        "--max-participants",
        type=int,
        default=0,
        help="cluster: redirect joins to another node beyond this many clients here (0: never)",
    )
    serve.add_argument(
        "--max-cpu",
        type=float,
        default=0.0,
        help="cluster: redirect joins while this node uses more than this share of a core "
        "(e.g. 0.8; 0: never)",
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
    token.add_argument(
        "--ttl",
        type=float,
        help=f"validity in seconds (default {TOKEN_TTL:.0f}; {ADMIN_TOKEN_TTL:.0f} with --admin)",
    )
    token.set_defaults(func=_token)

    bench = commands.add_parser(  # every argument goes to benchmarks.load, --help included
        "bench", help="load-test a server (python -m benchmarks.load)", prefix_chars="+"
    )
    bench.add_argument("bench_args", nargs="*")
    bench.set_defaults(func=_bench)
    return parser


def _bench(args: argparse.Namespace) -> None:
    """The load generator ships in the package (``benchmarks``), imported only when used."""
    from benchmarks.load.cli import main as bench_main

    sys.exit(bench_main(args.bench_args))


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    args.func(args)


if __name__ == "__main__":
    main()
