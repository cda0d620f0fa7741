from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sfu.config import MediaConfig
from signaling.client import PodiumClient
from signaling.config import ServerConfig
from signaling.server import PodiumServer
from signaling.tokens import mint_token

API_KEY = "testkey"
API_SECRET = "testsecret-0123456789abcdef0123456789"
LOOPBACK = ("127.0.0.1",)


def test_config(**overrides: Any) -> ServerConfig:
    media = overrides.pop("media", MediaConfig(announce_addresses=LOOPBACK))
    return ServerConfig(
        api_keys={API_KEY: API_SECRET}, host="127.0.0.1", port=0, media=media, **overrides
    )


def token(identity: str, role: str = "listener", room: str = "room1", **kw: Any) -> str:
    return mint_token(API_KEY, API_SECRET, identity=identity, room=room, role=role, **kw)


@pytest.fixture
async def server() -> AsyncIterator[PodiumServer]:
    srv = PodiumServer(test_config())
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
            server.url, token(identity, role, room=room), host_addresses=LOOPBACK, **kw
        )
        clients.append(client)
        await client.wait_connected()
        return client

    yield _connect
    for client in clients:
        await client.close()
