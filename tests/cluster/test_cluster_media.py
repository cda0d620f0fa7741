"""One room over three nodes (separate processes, real redis-server): media crosses the relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from signaling.client.client import PodiumClient
from tests.cluster.conftest import Node, StartNode
from tests.conftest import LOOPBACK, eventually, token
from tests.media import Recorder, ToneTrack, dominant_frequency, tone_level_db

ROOM = "big"
SETTLE = 0.6  # seconds of each slot's audio skipped (jitter buffer fill, first switch)

Join = Callable[..., Awaitable[PodiumClient]]


@pytest.fixture
async def join() -> AsyncIterator[Join]:
    clients: list[PodiumClient] = []

    async def _join(node: Node, identity: str, role: str = "listener", **kw: Any) -> PodiumClient:
        client = await PodiumClient.connect(
            node.url,
            token(identity, role, room=ROOM),
            host_addresses=LOOPBACK,
            tune_process=True,
            timeout=20,
            **kw,
        )
        clients.append(client)
        await client.wait_connected(20)
        return client

    yield _join
    for client in clients:
        await client.close()


def slot_of(client: PodiumClient, participant: str) -> int | None:
    return next((s.index for s in client.slots if s.participant == participant), None)


async def hears(client: PodiumClient, participant: str, frequency: float, seconds: float) -> None:
    """``client`` decodes ``participant``'s tone in the slot the server says carries it."""
    index = slot_of(client, participant)
    assert index is not None
    track = client.slots[index].track
    assert track is not None
    recorder = Recorder(track)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.sleep(SETTLE + seconds)
    recorder.stop()
    samples = recorder.between(start + SETTLE, start + SETTLE + seconds)
    assert len(samples) > 48_000 * seconds * 0.7, "too little audio arrived"
    assert abs(dominant_frequency(samples) - frequency) < 5
    assert tone_level_db(samples, frequency) > -40


async def test_speaker_on_one_node_is_heard_on_two_others(
    start_node: StartNode, join: Join
) -> None:
    a, b, c = [await start_node(name) for name in ("node-a", "node-b", "node-c")]
    speaker = await join(a, "alice", "host", publish=ToneTrack(440))
    on_b = await join(b, "bob")
    on_c = await join(c, "carol")
    await eventually(lambda: slot_of(on_b, "alice") is not None, timeout=15)
    await eventually(lambda: slot_of(on_c, "alice") is not None, timeout=15)
    assert speaker.join_info["room"]["name"] == ROOM
    await asyncio.gather(hears(on_b, "alice", 440, 1.5), hears(on_c, "alice", 440, 1.5))
