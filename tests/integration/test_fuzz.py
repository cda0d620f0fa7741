"""Property-based fuzzing of both ports while a room plays audio (issue 14, part 2).

Hypothesis draws random and mutated signaling frames (sent over a real
WebSocket) and random and mutated STUN / DTLS / RTP / RTCP datagrams (sent
at the shared media port, from a stranger's address and from a connected
listener's own, routed one).  Throughout: every frame gets one reply and
never ``internal_error``, nothing is logged at ERROR (no traceback), the
listener keeps receiving the speaker's audio, and once the fuzzers are gone
the process's file descriptors and memory are back to their baseline.

The server is a real ``podium serve`` process (its log, RSS and file
descriptors are its own); the clients run on an event loop in a background
thread, so Hypothesis drives them from plain synchronous tests.  The default
tier runs a few hundred examples (seconds); ``-m slow`` runs thousands.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aioice import stun
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.common import free_port, rss_mb, server_command, wait_healthy
from signaling.client.client import PodiumClient
from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
from signaling.server.session import HANDLER_TYPES
from signaling.wire.tokens import mint_token
from tests.conftest import LOOPBACK
from tests.media import ToneTrack

T = TypeVar("T")
# The clients' thread (aioice, aiortc) uses the global ``random`` while Hypothesis draws
# examples in this one, which Hypothesis mistakes for a strategy using it.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
FIELDS = (
    "token", "room", "sdp", "participant", "ban", "reason", "text", "emoji", "message_id",
    "cursor", "limit", "role", "mode",
)  # fmt: skip


def token(identity: str, role: str = "listener", room: str = "room1") -> str:
    return mint_token(DEV_API_KEY, DEV_API_SECRET, identity=identity, room=room, role=role)


class LiveRoom:
    """A server with a speaker playing a tone and a listener counting its packets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="podium-fuzz-", suffix=".log")[1])
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                server_command("signaling.server.cli", self.port, 3),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_healthy(self.port, self.process, 30)
        self.url = f"ws://127.0.0.1:{self.port}/rtc"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.arrivals: list[float] = []
        self.call(self._start())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.speaker = await PodiumClient.connect(
            self.url, token("speaker", "speaker"), publish=ToneTrack(440),
            host_addresses=LOOPBACK,
        )  # fmt: skip
        self.listener = await PodiumClient.connect(
            self.url, token("listener"), host_addresses=LOOPBACK,
            on_packet=lambda _slot, _packet: self.arrivals.append(time.monotonic()),
        )  # fmt: skip
        for client in (self.speaker, self.listener):
            await client.wait_connected()
        self.http = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = 0
        deadline = time.monotonic() + 10
        while not self.arrivals and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert self.arrivals, "no audio before fuzzing"

    # -- signaling ------------------------------------------------------------
    async def _fuzzer(self) -> aiohttp.ClientWebSocketResponse:
        if self.ws is None or self.ws.closed:
            self.ws = await self.http.ws_connect(self.url)
            self.ids += 1
            join = {"id": self.ids, "type": "join", "data": {"token": token("fuzz")}}
            await self.ws.send_str(json.dumps(join))
            await self._reply(self.ws)
        return self.ws

    async def _reply(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | None:
        """The next response or error; None if the server closed the socket instead."""
        while True:
            message = await ws.receive(timeout=10)
            if message.type != aiohttp.WSMsgType.TEXT:
                return None
            reply: dict[str, Any] = json.loads(message.data)
            if reply["type"] != "event":
                return reply
            if reply["event"] == "disconnected":
                assert reply["data"]["reason"] in ("left", "duplicate_identity"), reply

    async def exchange(self, frame: str | bytes) -> dict[str, Any] | None:
        ws = await self._fuzzer()
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        return await self._reply(ws)

    # -- media ------------------------------------------------------------------
    def routed_sender(self) -> tuple[Any, tuple[str, int]]:
        """The listener's own ICE transport and the server address it talks to."""
        assert self.listener.pc is not None
        ice = self.listener.pc.getTransceivers()[0].receiver.transport.transport._connection
        pair = ice._nominated[1]
        return pair.protocol.transport, pair.remote_addr

    def server_credentials(self) -> tuple[str, str]:
        assert self.listener.pc is not None and self.listener.pc.remoteDescription is not None
        sdp = self.listener.pc.remoteDescription.sdp
        ufrag, pwd = re.search(r"a=ice-ufrag:(\S+)", sdp), re.search(r"a=ice-pwd:(\S+)", sdp)
        assert ufrag and pwd
        return ufrag.group(1), pwd.group(1)

    async def send_datagrams(self, datagrams: list[bytes], routed: bool) -> None:
        transport, addr = self.routed_sender()
        if routed:
            for data in datagrams:
                transport.sendto(data, addr)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                for data in datagrams:
                    stranger.sendto(data, addr)
        await asyncio.sleep(0.01)

    # -- checks -----------------------------------------------------------------
    def longest_silence(self, since: float) -> float:
        times = [since, *(t for t in self.arrivals if t >= since), time.monotonic()]
        return max(b - a for a, b in itertools.pairwise(times))

    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)

    def fds(self) -> int:
        return len(list(Path(f"/proc/{self.process.pid}/fd").iterdir()))

    def metric(self, name: str, labels: str) -> float:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        found = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def problems_logged(self) -> str:
        """Tracebacks and errors in the server's log, each with the lines after it."""
        lines = self.log.read_text(errors="replace").splitlines()
        found = [i for i, line in enumerate(lines) if "Traceback" in line or " ERROR " in line]
        return "\n".join("\n".join(lines[i : i + 20]) for i in found)

    async def _close_fuzzer(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    def close(self) -> None:
        async def stop() -> None:
            await self._close_fuzzer()
            await self.http.close()
            for client in (self.listener, self.speaker):
                await client.close()

        try:
            self.call(stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        finally:
            self.process.terminate()
            self.process.wait(10)
            self.log.unlink()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveRoom]:
    room = LiveRoom()
    yield room
    room.close()


# -- strategies ---------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
tokens = st.sampled_from(
    [token("fuzz"), token("fuzz", room="elsewhere"), token("speaker", "speaker"), "x.y.z", ""]
)
field_values = json_values | tokens | st.sampled_from(["listener", "speaker", "host", "fuzz"])
requests = st.fixed_dictionaries(
    {
        "id": st.integers() | st.text(max_size=10) | json_values,
        "type": st.sampled_from(sorted(HANDLER_TYPES - {"leave"})) | st.text(max_size=12),
        "data": st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=4) | json_values,
    }
).map(json.dumps)


@st.composite
def mutated(draw: st.DrawFn, originals: st.SearchStrategy[bytes]) -> bytes:
    """A valid message with a few bytes flipped, inserted, or cut off."""
    data = bytearray(draw(originals))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos:]
    return bytes(data)


frames = (
    requests
    | json_values.map(json.dumps)
    | st.text(max_size=200)
    | st.binary(max_size=200)
    | mutated(requests.map(str.encode)).map(lambda b: b.decode("utf-8", "replace"))
)


def stun_messages(ufrag: str, pwd: str) -> st.SearchStrategy[bytes]:
    def build(rng: random.Random) -> bytes:
        message = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=rng.choice(list(stun.Class)),
            transaction_id=rng.randbytes(12),
        )
        message.attributes["USERNAME"] = f"{ufrag}:fuzz"
        message.attributes["PRIORITY"] = rng.getrandbits(32)
        message.attributes["ICE-CONTROLLING"] = rng.getrandbits(64)
        message.add_message_integrity(pwd.encode() if rng.random() < 0.5 else b"wrong")
        message.add_fingerprint()
        return bytes(message)

    return st.randoms(use_true_random=False).map(build)


def unauthenticated_check(ufrag: str) -> bytes:
    """A binding request naming a live ufrag, signed with the wrong password."""
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    message.attributes["USERNAME"] = f"{ufrag}:fuzz"
    message.add_message_integrity(b"wrong")
    message.add_fingerprint()
    return bytes(message)


def first_byte(low: int, high: int) -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(low, high), st.binary(max_size=300)).map(
        lambda t: bytes([t[0]]) + t[1]
    )


def datagrams(ufrag: str, pwd: str) -> st.SearchStrategy[bytes]:
    stun_ok = stun_messages(ufrag, pwd)
    rtp = st.tuples(st.integers(0, 127), st.binary(min_size=10, max_size=200)).map(
        lambda t: bytes([0x80, t[0]]) + t[1]
    )
    rtcp = st.tuples(st.integers(192, 223), st.binary(min_size=2, max_size=100)).map(
        lambda t: bytes([0x81, t[0]]) + t[1]
    )
    dtls = st.tuples(st.sampled_from([20, 21, 22, 23]), st.binary(max_size=200)).map(
        lambda t: bytes([t[0], 0xFE, 0xFD]) + t[1]
    )
    return (
        stun_ok
        | mutated(stun_ok)
        | first_byte(0, 3)  # STUN range (RFC 7983)
        | first_byte(20, 63)  # DTLS range
        | first_byte(128, 191)  # RTP/RTCP range
        | rtp
        | rtcp
        | mutated(rtp | rtcp | dtls)
        | st.binary(max_size=1500)
    )


# -- the properties ---------------------------------------------------------------------
def _fuzz_signaling(live: LiveRoom, examples: int) -> None:
    started = time.monotonic()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frame=frames)
    def one_frame(frame: str | bytes) -> None:
        reply = live.call(live.exchange(frame))
        if reply is None:  # the fuzzer's own session ended (e.g. a rejoin): reconnect next
            return
        assert reply["type"] in ("response", "error"), reply
        if reply["type"] == "error":
            assert reply["error"]["code"] != "internal_error", (frame, reply)

    one_frame()
    assert live.metric("podium_signaling_errors_total", 'code="internal_error"') == 0
    assert live.longest_silence(started) < 1.0
    assert not live.problems_logged(), live.problems_logged()


def _fuzz_media(live: LiveRoom, examples: int) -> None:
    started = time.monotonic()
    ufrag, pwd = live.server_credentials()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(batch=st.lists(datagrams(ufrag, pwd), min_size=1, max_size=20), routed=st.booleans())
    def one_batch(batch: list[bytes], routed: bool) -> None:
        live.call(live.send_datagrams(batch, routed))

    one_batch()
    # A stranger's check with a wrong password, whatever Hypothesis happened to draw.
    live.call(live.send_datagrams([unauthenticated_check(ufrag)], routed=False))
    assert live.longest_silence(started) < 1.0
    assert not live.problems_logged(), live.problems_logged()
    assert live.listener.pc is not None and live.listener.pc.connectionState == "connected"


def _fuzz(live: LiveRoom, examples: int) -> None:
    """Warm up (first allocations, caches), then fuzz; the server must end where it began."""
    _fuzz_signaling(live, 30)
    _fuzz_media(live, 30)
    live.call(live._close_fuzzer())
    fds, rss = live.fds(), live.rss_mb()
    _fuzz_signaling(live, examples)
    _fuzz_media(live, examples)
    live.call(live._close_fuzzer())
    deadline = time.monotonic() + 10
    while live.fds() > fds and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live.fds() <= fds
    assert live.rss_mb() < rss * 1.05 + 2, (rss, live.rss_mb())
    assert live.process.poll() is None
    dropped = {
        reason: live.metric("podium_udp_datagrams_dropped_total", f'reason="{reason}"')
        for reason in ("unknown", "unauthenticated", "malformed")
    }
    assert all(n > 0 for n in dropped.values()), dropped  # the fuzzer reached every path


# The fuzzer keeps a core busy and the test bounds the room's silence: on the worker
# of the CPU-heavy tiers, not beside them (tests/conftest.py).
@pytest.mark.xdist_group("heavy")
@pytest.mark.slow  # runs in CI, not in the quick default tier
def test_fuzzed_signaling_and_media_never_break_the_room(live: LiveRoom) -> None:
    _fuzz(live, 150)


@pytest.mark.xdist_group("heavy")
@pytest.mark.slow
def test_fuzzed_signaling_and_media_at_length(live: LiveRoom) -> None:
    _fuzz(live, 2000)
