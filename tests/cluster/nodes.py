"""A real redis-server on a free loopback port, and Podium nodes as separate processes
(for the cluster tests' fixtures and the browser driver's cluster scenario)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from redis.asyncio import Redis

from tests.conftest import API_KEY, API_SECRET

REPO = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A throwaway redis-server on a fixed loopback port: loopback only, no persistence."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None


@dataclass
class Node:
    id: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def http(self) -> str:
        return self.url.replace("ws://", "http://").removesuffix("/rtc")


async def launch_node(
    redis_url: str, redis: Redis, node_id: str, directory: Path, *extra: str
) -> Node:
    """``podium serve --redis`` as its own process on loopback; returns once registered."""
    log = directory / f"{node_id}.log"
    command = [
        sys.executable, "-m", "signaling.server.cli", "serve",
        "--api-key", API_KEY, "--api-secret", API_SECRET,
        "--host", "127.0.0.1", "--port", "0", "--udp-port", "0",
        "--announce-address", "127.0.0.1",
        "--redis", redis_url, "--node-id", node_id, "--relay-address", "127.0.0.1",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    node = Node(node_id, process, log)
    deadline = time.monotonic() + 30
    registered = f"podium:node:{node_id}"
    while not (url := await cast("Awaitable[str | None]", redis.hget(registered, "url"))):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"node {node_id} did not start:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.05)
    node.url = str(url)
    return node


def stop_nodes(nodes: list[Node]) -> None:
    """SIGTERM each node still running (it drains), then wait; kill what does not exit."""
    for node in nodes:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.process.wait(10)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()
