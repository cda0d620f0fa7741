from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sfu.config import MediaConfig
from signaling.client.client import PodiumClient
from signaling.room.settings import RoomSettings
from signaling.server.config import ServerConfig
from signaling.server.server import PodiumServer
from signaling.wire.tokens import mint_token

HEAVY_TIERS = ("browser", "bench", "cluster")
TIERS = ("unit", "integration", "browser", "bench", "cluster")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test's tier is the folder it lives in (tests/unit/, tests/integration/, ...).

    The tiers that keep a core busy (Chromium, benchmark runs, clusters of server
    processes) share one xdist worker, one test at a time (``--dist loadgroup``): the
    other worker meanwhile runs the tests that mostly wait on real-time audio and timers.
    """
    for item in items:
        tier = next((t for t in TIERS if t in item.path.parts), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
        if tier in HEAVY_TIERS:
            item.add_marker(pytest.mark.xdist_group("heavy"))


API_KEY = "testkey"
API_SECRET = "testsecret-0123456789abcdef0123456789"
LOOPBACK = ("127.0.0.1",)


def make_config(**overrides: Any) -> ServerConfig:
    # Sender reports every second, not 5: tests see RTT and SR contents sooner.
    media = overrides.pop(
        "media", MediaConfig(announce_addresses=LOOPBACK, sender_report_interval=1.0)
    )
    room = overrides.pop("room", RoomSettings(empty_timeout=0))
    return ServerConfig(
        api_keys={API_KEY: API_SECRET},
        host="127.0.0.1",
        port=0,
        media=media,
        room=room,
        **overrides,
    )


def token(identity: str, role: str = "listener", room: str = "room1", **kw: Any) -> str:
    return mint_token(API_KEY, API_SECRET, identity=identity, room=room, role=role, **kw)


@pytest.fixture
async def server() -> AsyncIterator[PodiumServer]:
    srv = PodiumServer(make_config())
    await srv.start()
    yield srv
    await srv.stop()


Connect = Callable[..., Awaitable[PodiumClient]]


@pytest.fixture
async def connect(server: PodiumServer) -> AsyncIterator[Connect]:
    """Connect real clients to ``server``; all are closed at teardown."""
    clients: list[PodiumClient] = []

    async def _connect(identity: str, role: str = "listener", **kw: Any) -> PodiumClient:
        room = kw.pop("room", "room1")
        client = await PodiumClient.connect(
            server.url,
            token(identity, role, room=room),
            host_addresses=LOOPBACK,
            tune_process=True,
            **kw,
        )
        clients.append(client)
        if client.pc is not None:
            await client.wait_connected()
        return client

    yield _connect
    for client in clients:
        await client.close()


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true; fail the test with a clear message otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


def udp_sockets() -> int:
    """UDP sockets this process holds open (server and in-process clients alike)."""
    inodes: set[str] = set()
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        with open(table) as f:
            inodes.update(line.split()[9] for line in list(f)[1:])
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:[") and target[8:-1] in inodes:
                count += 1
    return count
