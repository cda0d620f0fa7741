"""Bad input gets a clear error on its own session while the room keeps its audio."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import numpy as np
import pytest

from signaling.server.server import PodiumServer
from signaling.wire.tokens import mint_token
from tests.conftest import API_KEY, Connect, eventually, token
from tests.media import ToneTrack, record, tone_level_db


class RawClient:
    """A bare WebSocket, to send what no well-behaved client would."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = 0

    async def send(self, raw: str | bytes) -> dict[str, Any]:
        if isinstance(raw, bytes):
            await self.ws.send_bytes(raw)
        else:
            await self.ws.send_str(raw)
        while True:  # skip room events; return the reply
            message = await self.ws.receive(timeout=5)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            reply: dict[str, Any] = json.loads(message.data)
            if reply["type"] != "event":
                return reply

    async def request(self, kind: str, **data: Any) -> dict[str, Any]:
        self.ids += 1
        return await self.send(json.dumps({"id": self.ids, "type": kind, "data": data}))


def code(reply: dict[str, Any]) -> str:
    assert reply["type"] == "error", reply
    assert reply["error"]["message"], reply
    return str(reply["error"]["code"])


async def barrage(url: str) -> dict[str, str]:
    """Every kind of bad input, each on a fresh connection; returns what came back."""
    seen: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:

        async def fresh() -> RawClient:
            return RawClient(await http.ws_connect(url))

        forged = mint_token(
            API_KEY, "not-the-secret-0123456789abcdef01", identity="x", room="room1"
        )
        expired = mint_token(
            API_KEY,
            "testsecret-0123456789abcdef0123456789",
            identity="x",
            room="room1",
            ttl=1,
            now=time.time() - 60,
        )
        seen["forged"] = code(await (await fresh()).request("join", token=forged))
        seen["expired"] = code(await (await fresh()).request("join", token=expired))
        seen["wrong_room"] = code(
            await (await fresh()).request("join", token=token("x", room="room1"), room="room2")
        )
        client = await fresh()
        seen["offer_before_join"] = code(await client.request("offer", sdp="v=0"))
        seen["malformed"] = code(await client.send("{this is not json"))
        seen["binary"] = code(await client.send(b"\x00\xff\x10garbage"))
        seen["unknown"] = code(await client.request("teleport"))
        seen["oversized"] = code(
            await client.send(json.dumps({"id": 1, "type": "ping", "pad": "x" * 70_000}))
        )
        assert (await client.request("ping"))["type"] == "response"  # the session goes on
        joined = await client.request("join", token=token("mallory", "speaker"))
        assert joined["type"] == "response"
        seen["invalid_sdp"] = code(await client.request("offer", sdp="v=0\r\nthis is not sdp"))
        seen["no_sdp"] = code(await client.request("offer"))
        seen["video_only"] = code(await client.request("offer", sdp=VIDEO_OFFER))
        seen["red_only"] = code(await client.request("offer", sdp=RED_ONLY_OFFER))
        assert (await client.request("ping"))["type"] == "response"
        await client.request("leave")
    return seen


VIDEO_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n"
    "a=rtpmap:96 VP8/90000\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\na=rtcp-mux\r\n"
)

# RED with nothing inside it: the server answers RED only around Opus.
RED_ONLY_OFFER = VIDEO_OFFER.replace(
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "m=audio 9 UDP/TLS/RTP/SAVPF 63"
).replace("a=rtpmap:96 VP8/90000", "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111")


@pytest.mark.slow  # runs in CI, not in the quick default tier
async def test_bad_input_barrage_gets_errors_while_audio_keeps_flowing(
    server: PodiumServer, connect: Connect
) -> None:
    await connect("speaker", "speaker", publish=ToneTrack(440))
    listener = await connect("listener")
    await eventually(lambda: listener.slots[0].participant == "speaker")
    track = listener.slots[0].track
    assert track is not None
    await record(track, 0.5)  # fill the jitter buffer

    track = listener.slots[0].track
    assert track is not None
    recording = asyncio.create_task(record(track, 3.0))
    seen = await barrage(server.url)
    samples = await recording

    assert seen == {
        "forged": "token_invalid",
        "expired": "token_expired",
        "wrong_room": "room_mismatch",
        "offer_before_join": "not_joined",
        "malformed": "malformed_json",
        "binary": "malformed_json",
        "unknown": "unknown_type",
        "oversized": "message_too_large",
        "invalid_sdp": "invalid_sdp",
        "no_sdp": "invalid_request",
        "video_only": "invalid_sdp",
        "red_only": "invalid_sdp",
    }
    # The listener heard the tone in every 250 ms window of the barrage: no dropout.
    windows = np.array_split(samples, len(samples) // 12_000)
    assert len(windows) >= 10
    assert all(tone_level_db(w, 440) > -30 for w in windows)
    assert set(server.rooms["room1"].participants) == {"speaker", "listener"}


async def test_frame_beyond_the_transport_limit_closes_only_that_socket(
    server: PodiumServer, connect: Connect
) -> None:
    listener = await connect("listener")
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url) as ws:
        await ws.send_str("x" * (2 * 1024 * 1024))
        message = await ws.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert (await listener.request("ping"))["time"] > 0
    assert "listener" in server.rooms["room1"].participants
