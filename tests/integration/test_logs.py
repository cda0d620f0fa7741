"""What ``podium serve`` tells its operator: structured logs, quiet scrapes, one-line errors."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from signaling.client.client import PodiumClient
from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
from signaling.wire.tokens import mint_token

SERVE = [sys.executable, "-m", "signaling.server.cli", "serve", "--dev"]


async def _read_json_lines(stream: asyncio.StreamReader, lines: list[dict[str, Any]]) -> None:
    while line := await stream.readline():
        lines.append(json.loads(line))  # every line is one JSON object


async def test_json_logs_name_joins_leaves_and_shutdown_but_not_scrapes() -> None:
    proc = await asyncio.create_subprocess_exec(
        *SERVE, "--port", "0", "--udp-port", "0", "--log-format", "json",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[dict[str, Any]] = []
    reader = asyncio.ensure_future(_read_json_lines(proc.stderr, lines))
    try:
        async with asyncio.timeout(20):
            while not any(line["message"].startswith("Podium listening") for line in lines):
                await asyncio.sleep(0.05)
        listening = next(line for line in lines if line["message"].startswith("Podium listening"))
        url = listening["message"].split()[3]
        base = url.replace("ws://", "http://").removesuffix("/rtc")
        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/metrics", "/readyz", "/openapi.json"):
                async with http.get(base + path) as response:
                    assert response.status == 200, path
        token = mint_token(DEV_API_KEY, DEV_API_SECRET, identity="ada", room="logs", role="host")
        client = await PodiumClient.connect(url, token, media=False)
        await client.leave()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
        await reader
    assert proc.returncode == 0
    events = {line["event"]: line for line in lines if "event" in line}
    joined = events["participant_joined"]
    assert (joined["room"], joined["participant"], joined["role"]) == ("logs", "ada", "host")
    assert events["participant_left"]["reason"] == "left"
    assert events["shutdown"]["rooms"] == 1 and events["shutdown"]["participants"] == 0
    assert events["room_finished"]["reason"] in ("room_closed", "server_shutdown")
    access = [line["message"] for line in lines if line["logger"] == "aiohttp.access"]
    assert any("GET /openapi.json" in message for message in access), access
    assert not any(p in m for m in access for p in ("/healthz", "/metrics", "/readyz")), access
    assert {"time", "level", "logger", "message"} <= set(joined)


def _run_serve(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVE, *options], capture_output=True, text=True, timeout=30)


@pytest.mark.slow  # over 5 s: runs in CI, not in the quick default tier
def test_ports_in_use_and_bad_options_end_in_one_line() -> None:
    with socket.socket() as taken_tcp, socket.socket(type=socket.SOCK_DGRAM) as taken_udp:
        taken_tcp.bind(("127.0.0.1", 0))
        taken_tcp.listen()
        taken_udp.bind(("127.0.0.1", 0))
        tcp_port, udp_port = taken_tcp.getsockname()[1], taken_udp.getsockname()[1]
        http = _run_serve("--port", str(tcp_port), "--udp-port", "0")
        udp = _run_serve(
            "--port", "0", "--udp-port", str(udp_port), "--announce-address", "127.0.0.1"
        )
    for done in (http, udp):
        assert done.returncode == 1
        last = done.stderr.splitlines()[-1]
        assert last.startswith("podium serve: ") and "another process has it" in last, done.stderr
        assert "Traceback" not in done.stderr
    assert str(tcp_port) in http.stderr.splitlines()[-1]
    assert str(udp_port) in udp.stderr.splitlines()[-1]
    slots = _run_serve("--slots", "0")
    assert (slots.returncode, slots.stderr) == (1, "podium serve: slots must be at least 1\n")
    port = _run_serve("--udp-port", "70000")
    assert port.returncode == 2 and "'70000' is not a port (0-65535)" in port.stderr
    assert "Traceback" not in port.stderr
    for option, message in (
        (("--announce-address", "sfu.example"), "takes IP addresses (or 'auto'), not"),
        (("--webhook-url", "example.org/hook"), "is not an http(s) URL"),
        (("--recordings-dir", "/proc/podium"), "--recordings-dir /proc/podium: "),
    ):
        done = _run_serve(*option)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("podium serve: ") and message in done.stderr, done.stderr
