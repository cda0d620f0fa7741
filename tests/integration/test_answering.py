"""The one-pass answer says and sets what aiortc's createAnswer + setLocalDescription do."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, sdp
from aiortc.exceptions import InvalidStateError

from sfu.rtc.answering import AnsweringPeerConnection


async def _offer(data_channel: bool = False) -> RTCPeerConnection:
    client = RTCPeerConnection()
    client.addTransceiver("audio", direction="sendrecv")
    for _ in range(3):
        client.addTransceiver("audio", direction="recvonly")
    if data_channel:
        client.createDataChannel("chat")
    await client.setLocalDescription(await client.createOffer())
    return client


def _shape(answer: str) -> list[tuple[Any, ...]]:
    """Everything in an answer that is not drawn at random (ICE credentials, ports, ids)."""
    parsed = sdp.SessionDescription.parse(answer)
    shape: list[tuple[Any, ...]] = [
        ("group", [(g.semantic, g.items) for g in parsed.group]),
        ("msid-semantic", [(g.semantic, g.items) for g in parsed.msid_semantic]),
    ]
    for m in parsed.media:
        assert m.dtls is not None
        shape.append(
            (
                m.kind,
                m.direction,
                m.rtp.muxId,
                [(c.mimeType, c.payloadType, c.parameters) for c in m.rtp.codecs],
                [(x.uri, x.id) for x in m.rtp.headerExtensions],
                m.dtls.role,
                [f.algorithm for f in m.dtls.fingerprints],  # values: each pc its own key,
                [(c.type, c.ip, c.protocol) for c in m.ice_candidates],
                m.ice_candidates_complete,
                m.rtcp_mux,
                len(m.ssrc),
            )
        )
    return shape


async def _both_ways(data_channel: bool) -> tuple[list[AnsweringPeerConnection], str, str]:
    client = await _offer(data_channel)
    offer = RTCSessionDescription(client.localDescription.sdp, "offer")
    ours, theirs = AnsweringPeerConnection(), AnsweringPeerConnection()
    for pc in (ours, theirs):
        await pc.setRemoteDescription(offer)
    answered = await ours.answer()
    await theirs.setLocalDescription(await theirs.createAnswer())
    await client.close()
    return [ours, theirs], answered, theirs.localDescription.sdp


@pytest.mark.parametrize("data_channel", [False, True], ids=["audio", "with-data-channel"])
async def test_answer_is_aiortcs_answer_and_sets_the_same_state(data_channel: bool) -> None:
    (ours, theirs), answered, expected = await _both_ways(data_channel)
    try:
        assert answered == ours.localDescription.sdp
        assert _shape(answered) == _shape(expected)
        assert ours.signalingState == theirs.signalingState == "stable"
        for a, b in zip(ours.getTransceivers(), theirs.getTransceivers(), strict=True):
            assert a.currentDirection == b.currentDirection
            assert a.receiver.transport._role == b.receiver.transport._role == "client"
    finally:
        await ours.close()
        await theirs.close()


async def test_the_answer_connects() -> None:
    client = await _offer()
    server = AnsweringPeerConnection()
    try:
        offer = RTCSessionDescription(client.localDescription.sdp, "offer")
        await server.setRemoteDescription(offer)
        await client.setRemoteDescription(RTCSessionDescription(await server.answer(), "answer"))
        async with asyncio.timeout(10):
            while (client.connectionState, server.connectionState) != ("connected", "connected"):
                await asyncio.sleep(0.02)
    finally:
        await client.close()
        await server.close()


async def test_no_answer_without_an_offer() -> None:
    pc = AnsweringPeerConnection()
    try:
        with pytest.raises(InvalidStateError):
            await pc.answer()
    finally:
        await pc.close()
