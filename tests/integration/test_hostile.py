"""Hostile clients cannot hold or burn the server's resources, nor take it down.

Each test here is one item of issue 14's part 2, against a real server on
loopback: raw sockets and WebSockets for what no honest client sends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
import uvloop
from aioice import stun
from aiortc import RTCPeerConnection

from signaling.server.server import PodiumServer
from signaling.wire.errors import PodiumError
from signaling.wire.tokens import verify_token
from signaling.wire.webhook_verify import WebhookError, sign_webhook, verify_webhook
from tests.conftest import API_KEY, API_SECRET, Connect, eventually, make_config, token
from tests.integration.test_robustness import RawClient, code
from tests.media import ToneTrack, dominant_frequency, record
from tests.rooms import media_of


@pytest.fixture
async def strict_server() -> AsyncIterator[PodiumServer]:
    """Short deadlines and a small per-address cap, so tests see them act."""
    srv = PodiumServer(
        make_config(join_timeout=0.5, header_timeout=0.5, max_connections_per_address=40)
    )
    await srv.start()
    yield srv
    await srv.stop()


# -- signaling ------------------------------------------------------------------
async def test_json_nested_ten_thousand_deep_is_malformed_json(server: PodiumServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url) as ws:
        client = RawClient(ws)
        for deep in ("[" * 10_000 + "]" * 10_000, '{"a":' * 10_000 + "1" + "}" * 10_000):
            assert code(await client.send(deep)) == "malformed_json"
        assert (await client.request("ping"))["type"] == "response"
    assert "internal_error" not in server.errors


async def test_a_websocket_that_never_joins_is_closed_after_the_join_deadline(
    strict_server: PodiumServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        idle = await http.ws_connect(strict_server.url)
        joined = RawClient(await http.ws_connect(strict_server.url))
        assert (await joined.request("join", token=token("ann")))["type"] == "response"
        message = await idle.receive(timeout=5)
        assert json.loads(message.data) == {
            "type": "event",
            "event": "disconnected",
            "data": {"reason": "join_timeout"},
        }
        assert (await idle.receive(timeout=5)).type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
        )
        await asyncio.sleep(1.0)  # twice the deadline and the header timeout: still there
        assert (await joined.request("ping"))["type"] == "response"
        assert "ann" in strict_server.rooms["room1"].participants
        await joined.ws.close()


async def _open(port: int, count: int, first_bytes: bytes = b"") -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        if first_bytes:
            sock.send(first_bytes)
        socks.append(sock)
    return socks


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


async def test_idle_sockets_and_unfinished_headers_are_closed() -> None:
    server = PodiumServer(make_config(header_timeout=0.5))
    await server.start()
    socks: list[socket.socket] = []
    try:
        socks = await _open(server.port, 500)  # idle: never a byte
        socks += await _open(server.port, 200, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: ")
        started = time.monotonic()
        await eventually(lambda: all(_closed_by_server(s) for s in socks), timeout=15)
        assert time.monotonic() - started < 10
        assert sum(server.connections.open.values()) == 0
        async with (  # and the server still serves
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.port}/healthz") as response,
        ):
            assert response.status == 200
    finally:
        for sock in socks:
            sock.close()
        await server.stop()


async def test_connections_per_source_address_are_capped(strict_server: PodiumServer) -> None:
    socks = await _open(strict_server.port, 50)
    try:
        await eventually(lambda: sum(_closed_by_server(s) for s in socks) >= 10, timeout=5)
        assert strict_server.connections.open["127.0.0.1"] <= 40
        assert strict_server.connections.refused >= 10
    finally:
        for sock in socks:
            sock.close()
    await eventually(lambda: not strict_server.connections.open)
    async with (  # freed seats are given out again
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{strict_server.port}/healthz") as response,
    ):
        assert response.status == 200


def test_connections_over_the_cap_are_refused_under_uvloop_too() -> None:
    """``podium serve`` runs on uvloop, whose TCP transport is no ``asyncio.Transport``:
    a refusal there once raised in ``connection_made`` instead of closing the socket."""
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: errors.append(context)
        )
        server = PodiumServer(make_config(max_connections_per_address=5))
        await server.start()
        socks = await _open(server.port, 8)
        try:
            await eventually(lambda: sum(_closed_by_server(s) for s in socks) >= 3, timeout=5)
            assert server.connections.refused == 3
        finally:
            for sock in socks:
                sock.close()
            await server.stop()

    uvloop.run(main())
    assert errors == []


async def test_hand_toggles_are_rate_limited_before_they_reach_anyone(
    server: PodiumServer, connect: Connect
) -> None:
    host = await connect("host", "host", media=False)
    listener = await connect("lou", media=False)
    refused, raised = 0, False
    for _ in range(200):
        try:
            await listener.request("lower_hand" if raised else "raise_hand")
            raised = not raised
        except PodiumError as error:
            assert error.code == "rate_limited"
            refused += 1
    assert refused >= 190
    await host.request("ping")  # everything the toggles caused is queued before this reply
    seen = 0
    while not host._events.empty():
        event = host._events.get_nowait()
        if event is not None and event.name in ("hand_raised", "hand_lowered"):
            seen += 1
    assert 0 < seen <= 10


# -- tokens ---------------------------------------------------------------------
def _raw_token(**claims: Any) -> str:
    now = time.time()
    body = {"iss": API_KEY, "sub": "ann", "room": "room1", "exp": now + 600, **claims}
    return jwt.encode(body, API_SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": math.inf},
        {"exp": math.nan},
        {"exp": 1e300},
        {"exp": True},
        {"exp": "tomorrow"},
        {"nbf": -math.inf},
        {"nbf": -5},
        {"iat": 1e30},
        pytest.param({"iat": time.time() + 3600}, id="{'iat': now + 1 h}"),  # same id everywhere
        {"sub": "mix"},
        {"sub": "mix-minus:bob"},
        {"sub": "ann\u202egnp.exe"},  # right-to-left override
        {"sub": "ann\x00"},
        {"sub": "ann\nbob"},
        {"sub": "a\u200bnn"},  # zero-width space
        {"sub": " ann"},
    ],
    ids=repr,
)
def test_absurd_times_and_unprintable_or_reserved_identities_are_refused(
    claims: dict[str, Any],
) -> None:
    with pytest.raises(PodiumError) as refused:
        verify_token(_raw_token(**claims), {API_KEY: API_SECRET})
    assert refused.value.code == "token_invalid"


def test_one_clock_skew_allowance_for_every_token_time() -> None:
    """A clock 8 s ahead is tolerated everywhere (nbf, iat; tokens and webhooks), 12 s nowhere."""
    keys = {API_KEY: API_SECRET}
    body = b'{"event": "x"}'
    for ahead, accepted in ((8.0, True), (12.0, False)):
        future = time.time() + ahead
        access = _raw_token(nbf=future, iat=future)
        signature = sign_webhook(body, API_KEY, API_SECRET, now=future)
        if accepted:
            assert verify_token(access, keys).identity == "ann"
            assert verify_webhook(body, {"Authorization": signature}, API_SECRET)["event"] == "x"
        else:
            with pytest.raises(PodiumError):
                verify_token(access, keys)
            with pytest.raises(WebhookError):
                verify_webhook(body, {"Authorization": signature}, API_SECRET)
    late = _raw_token(exp=time.time() - 5)  # expired 5 s ago: inside the allowance
    assert verify_token(late, keys).identity == "ann"
    with pytest.raises(PodiumError) as expired:
        verify_token(_raw_token(exp=time.time() - 15), keys)
    assert expired.value.code == "token_expired"


async def test_no_participant_can_take_the_reserved_mix_identity(server: PodiumServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url) as ws:
        reply = await RawClient(ws).request("join", token=token("mix", "speaker"))
    assert code(reply) == "token_invalid"
    assert "room1" not in server.rooms or "mix" not in server.rooms["room1"].participants


# -- media port -------------------------------------------------------------------
def _short_priority_check() -> bytes:
    """A 32-byte STUN binding request whose PRIORITY attribute is 2 bytes long."""
    attrs = struct.pack("!HH", 0x0006, 0)  # an empty USERNAME
    attrs += struct.pack("!HH", 0x0024, 2) + b"\x00\x01\x00\x00"  # PRIORITY, length 2, padded
    header = struct.pack("!HHI12s", 0x0001, len(attrs), stun.COOKIE, b"t" * 12)
    return header + attrs


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged_errors() -> AsyncIterator[_Errors] | Any:
    handler = _Errors()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


async def test_no_datagram_raises_out_of_the_media_port(
    server: PodiumServer, connect: Connect, logged_errors: _Errors
) -> None:
    assert server.udp is not None
    speaker = await connect("alice", "speaker", publish=ToneTrack(440))
    listener = await connect("bob")
    await eventually(lambda: listener.slots[0].participant == "alice")
    assert len(_short_priority_check()) == 32

    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", server.udp.port)
    # From the listener's own address: a route the server knows, where aioice parses it.
    assert listener.pc is not None
    ice = listener.pc.getTransceivers()[0].receiver.transport.transport._connection
    pair = ice._nominated[1]
    for _ in range(50):
        stranger.sendto(_short_priority_check(), target)
        pair.protocol.transport.sendto(_short_priority_check(), pair.remote_addr)
        pair.protocol.transport.sendto(b"", pair.remote_addr)  # killed aiortc's DTLS transport
    await eventually(
        lambda: server.udp is not None and server.udp.stats["malformed_datagrams"] >= 50
    )
    track = listener.slots[0].track
    assert track is not None
    samples = await record(track, 1.0)
    assert abs(dominant_frequency(samples[12000:]) - 440) < 5
    assert logged_errors.records == []  # no traceback per datagram
    assert media_of(server.rooms["room1"]).peers["bob"].connection_state == "connected"
    metrics = f"http://127.0.0.1:{server.port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(metrics) as response:
        text = await response.text()
    assert re.search(r'podium_udp_datagrams_dropped_total\{reason="malformed"\} [1-9]', text)
    stranger.close()
    await speaker.leave()


async def _negotiated_but_never_connected(server: PodiumServer) -> tuple[RawClient, str, str]:
    """A participant whose server-side ICE never completes; returns (client, ufrag, pwd)."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()  # its candidates now point at closed ports
    http = aiohttp.ClientSession()
    client = RawClient(await http.ws_connect(server.url))
    client.http = http  # type: ignore[attr-defined]
    assert (await client.request("join", token=token("pat")))["type"] == "response"
    answer = (await client.request("offer", sdp=offer))["data"]["sdp"]
    ufrag = re.search(r"a=ice-ufrag:(\S+)", answer)
    pwd = re.search(r"a=ice-pwd:(\S+)", answer)
    assert ufrag and pwd
    return client, ufrag.group(1), pwd.group(1)


def _check(ufrag: str, key: bytes) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    message.attributes["USERNAME"] = f"{ufrag}:client"
    message.attributes["PRIORITY"] = 1
    message.attributes["ICE-CONTROLLING"] = 1
    message.add_message_integrity(key)
    message.add_fingerprint()
    return bytes(message)


async def test_an_address_is_routed_only_after_a_check_with_valid_integrity(
    server: PodiumServer,
) -> None:
    assert server.udp is not None
    client, ufrag, pwd = await _negotiated_but_never_connected(server)
    forger, honest = (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
    )
    forger.bind(("127.0.0.1", 0))
    honest.bind(("127.0.0.1", 0))
    target = ("127.0.0.1", server.udp.port)
    routes = server.udp.sockets[0].routes
    try:
        forger.sendto(_check(ufrag, b"a wrong password"), target)
        honest.sendto(_check(ufrag, pwd.encode()), target)
        await eventually(lambda: honest.getsockname() in routes)
        assert forger.getsockname() not in routes
        assert server.udp.stats["unauthenticated_checks"] == 1

        # Behind an address that passed: at most MAX_QUEUED datagrams wait for ICE/DTLS.
        connection = server.udp.lookup(ufrag)
        assert connection is not None
        for _ in range(2000):
            honest.sendto(b"\x16\xfe\xfd" + bytes(60), target)  # DTLS-looking
        await eventually(lambda: server.udp is not None and server.udp.stats["queue_full"] > 0)
        from sfu.rtc.udp_mux import MAX_QUEUED

        assert connection._queue.qsize() <= MAX_QUEUED
    finally:
        forger.close()
        honest.close()
        await client.ws.close()
        await client.http.close()  # type: ignore[attr-defined]
