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
from sfu.rtc.media_room import MediaRoom
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


def count(kind: type) -> int:
    return sum(isinstance(o, kind) for o in gc.get_objects())


async def test_closed_sessions_and_peers_are_freed_by_reference_counting(
    quick_server: PodiumServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed aiortc peer connection lives in reference cycles (with its OpenSSL
    connection and SRTP sessions), and so did aiohttp's WebSocket objects, until the
    server broke them: now both are freed at once, with the automatic GC off and no pass
    of the server's own, while the room they were in goes on."""
    monkeypatch.setattr(reclaim, "MINIMUM", 1000)
    anchor = await join(quick_server, "anchor")  # keeps the room open
    gc.collect()
    baseline = count(MediaPeer), count(Session)
    escaped, passes = reclaim.reclaimer.escaped, reclaim.reclaimer.passes
    gc.disable()
    try:
        for i in range(12):
            speaker = await join(
                quick_server, f"s{i}", "speaker", publish=ToneTrack(440), heartbeat=None
            )
            client = await join(quick_server, f"l{i}")
            await asyncio.sleep(0.1)  # media flows: the receivers' tasks have run
            await client.leave()  # a clean leave, and a dropped socket: its seat is held
            await client.close()
            transport = speaker.ws._response.connection.transport  # type: ignore[union-attr]
            assert transport is not None
            transport.abort()
            await speaker.close()
        await eventually(lambda: len(quick_server.rooms["room1"].participants) == 1, timeout=5)
        await eventually(lambda: (count(MediaPeer), count(Session)) == baseline, timeout=3)
        await asyncio.sleep(reclaim.GRACE + 0.2)  # the reclaimer's second look
        assert reclaim.reclaimer.escaped == escaped and reclaim.reclaimer.passes == passes
    finally:
        gc.enable()
        await anchor.close()


async def test_what_escapes_reference_counting_is_collected(
    quick_server: PodiumServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed room's parts refer to each other: the reclaimer finds them still alive a
    moment later and, every MINIMUM such, runs a full collection (automatic GC off)."""
    monkeypatch.setattr(reclaim, "MINIMUM", 2)
    monkeypatch.setattr(reclaim.reclaimer, "pending", 0)  # what earlier tests left counted
    gc.collect()
    baseline = count(MediaRoom)
    passes = reclaim.reclaimer.passes
    gc.disable()
    try:
        for i in range(4):  # each one alone in its room: the room closes when it leaves
            client = await join(quick_server, f"l{i}")
            await client.leave()
            await client.close()
            await eventually(lambda: not quick_server.rooms)
        await asyncio.sleep(reclaim.GRACE + 0.2)
        # The second escaped room started a pass, which freed the others as well.
        assert reclaim.reclaimer.passes == passes + 1
        assert count(MediaRoom) == baseline
    finally:
        gc.enable()
