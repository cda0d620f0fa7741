"""Leaving — cleanly, abruptly or by vanishing — returns the server to its baseline."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sfu.rtc import reclaim
from sfu.rtc.peer import MediaPeer
from signaling.client.client import PodiumClient
from signaling.server.server import PodiumServer
from signaling.server.session import Session
from tests.conftest import LOOPBACK, eventually, make_config, token, udp_sockets
from tests.media import ToneTrack


@pytest.fixture
async def quick_server() -> AsyncIterator[PodiumServer]:
    # A short resume window: a lost connection's seat is held 0.5 s, then released.
    srv = PodiumServer(make_config(keepalive_interval=0.4, resume_window=0.5))
    await srv.start()
    yield srv
    await srv.stop()


def server_is_idle(server: PodiumServer) -> bool:
    dump = server.dump()
    return dump["peer_connections"] == 0 and dump["routing_entries"] == 0 and not server.rooms


async def join(
    server: PodiumServer, identity: str, role: str = "listener", **kw: Any
) -> PodiumClient:
    client = await PodiumClient.connect(
        server.url, token(identity, role), host_addresses=LOOPBACK, **kw
    )
    await client.wait_connected()
    return client


async def test_clean_leave_and_abrupt_disconnect_release_everything(
    quick_server: PodiumServer,
) -> None:
    server = quick_server
    baseline = udp_sockets()
    speaker = await join(server, "speaker", "speaker", publish=ToneTrack(440))
    polite = await join(server, "polite")
    rude = await join(server, "rude", heartbeat=None)  # a crashed app: it never resumes
    await eventually(lambda: server.dump()["routing_entries"] == 2)
    assert server.dump()["peer_connections"] == 3
    assert udp_sockets() > baseline

    await polite.leave()
    await eventually(lambda: "polite" not in server.rooms["room1"].participants)
    assert server.dump()["routing_entries"] == 1

    # Abrupt: the TCP connection dies without a WebSocket close; the peer connection
    # is left open on the client side, as a crashed app would leave it. Its seat is
    # held for the resume window, then released.
    transport = rude.ws._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    transport.abort()
    await eventually(lambda: "rude" not in server.rooms["room1"].participants)
    assert server.dump()["peer_connections"] == 1 and server.dump()["routing_entries"] == 0

    await speaker.leave()
    await eventually(lambda: server_is_idle(server))
    await rude.close()
    await eventually(lambda: udp_sockets() == baseline, timeout=5)


async def test_vanished_client_is_removed_by_keepalive(quick_server: PodiumServer) -> None:
    """A client that stops answering (no FIN, no pongs) is dropped after the keepalive timeout."""
    server = quick_server
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /rtc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b"101" in await reader.readline()
    payload = json.dumps({"id": 1, "type": "join", "data": {"token": token("ghost")}}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask
    writer.write(header + masked)
    await writer.drain()
    await eventually(
        lambda: "room1" in server.rooms and "ghost" in server.rooms["room1"].participants
    )
    # Now go silent: never read, never answer pings.
    await eventually(lambda: server_is_idle(server), timeout=5)
    writer.close()


def media_peers() -> int:
    return sum(isinstance(o, MediaPeer) for o in gc.get_objects())


def sessions() -> int:
    return sum(isinstance(o, Session) for o in gc.get_objects())


async def test_closed_peer_connections_are_freed_by_reference_counting(
    quick_server: PodiumServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed aiortc peer connection lives in reference cycles (with its OpenSSL
    connection and SRTP sessions) until the server breaks them: then it is freed at once,
    with the automatic GC off and no pass of the server's own."""
    monkeypatch.setattr(reclaim, "MINIMUM", 1000)
    gc.collect()
    baseline = media_peers()
    passes = reclaim.reclaimer.passes
    gc.disable()
    try:
        for i in range(12):
            speaker = await join(quick_server, f"s{i}", "speaker", publish=ToneTrack(440))
            client = await join(quick_server, f"l{i}")
            await asyncio.sleep(0.1)  # media flows: the receivers' tasks have run
            for leaving in (client, speaker):
                await leaving.leave()
                await leaving.close()
        await eventually(lambda: not quick_server.rooms)
        await eventually(lambda: media_peers() == baseline, timeout=3)
        assert reclaim.reclaimer.passes == passes
    finally:
        gc.enable()


async def test_the_server_collects_what_closed_sessions_leave(
    quick_server: PodiumServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session's WebSocket objects (aiohttp's) still form cycles: every MINIMUM closed
    peers, a full collection frees them, whatever the automatic GC does (here: off)."""
    monkeypatch.setattr(reclaim, "MINIMUM", 4)
    gc.collect()
    baseline = sessions()
    gc.disable()
    try:
        for i in range(12):
            client = await join(quick_server, f"l{i}")
            await client.leave()
            await client.close()
        await eventually(lambda: not quick_server.rooms)
        # At most MINIMUM - 1 closed since the last pass, and the one closing during it.
        assert sessions() - baseline <= reclaim.MINIMUM
    finally:
        gc.enable()
