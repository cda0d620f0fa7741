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


class EventLog:
    """Every event a client receives, in order (read continuously in the background)."""

    def __init__(self, client: PodiumClient) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._task = asyncio.create_task(self._read(client))

    async def _read(self, client: PodiumClient) -> None:
        async for event in client.events():
            self.events.append((event.name, event.data))

    def named(self, *names: str) -> list[tuple[str, dict[str, Any]]]:
        return [e for e in self.events if e[0] in names]

    def stop(self) -> None:
        self._task.cancel()


ROOM_WIDE = ("role_changed", "muted", "chat", "pinned")


async def test_listener_invited_on_an_edge_is_heard_everywhere_and_events_agree(
    start_node: StartNode, join: Join
) -> None:
    a, b, c = [await start_node(name) for name in ("node-a", "node-b", "node-c")]
    alice = await join(a, "alice", "host", publish=ToneTrack(440))
    dave = await join(a, "dave")
    bob = await join(b, "bob")
    carol = await join(c, "carol")
    logs = {name: EventLog(client) for name, client in
            [("alice", alice), ("dave", dave), ("bob", bob), ("carol", carol)]}  # fmt: skip

    await carol.request("raise_hand")
    await eventually(lambda: any(n == "hand_raised" for n, _ in logs["alice"].events))
    await alice.request("invite_to_stage", participant="carol")
    await eventually(lambda: any(name == "invited" for name, _ in logs["carol"].events))
    await carol.request("accept_invite")
    await carol.publish(ToneTrack(660))
    await carol.request("unmute")  # invitees arrive muted
    await alice.request("send_chat", text="welcome, carol")
    await bob.request("send_chat", text="hello from node B")

    hearing = (alice, dave, bob)  # on the origin and on another edge
    await eventually(lambda: all(slot_of(c, "carol") is not None for c in hearing), timeout=15)
    await asyncio.gather(
        hears(dave, "carol", 660, 1.5),
        hears(bob, "carol", 660, 1.5),
        hears(alice, "carol", 660, 1.5),
        hears(carol, "alice", 440, 1.5),  # the edge's speaker still hears the origin's
    )
    await eventually(lambda: all(len(log.named("chat")) == 2 for log in logs.values()))
    seen = [log.named(*ROOM_WIDE) for log in logs.values()]
    assert [name for name, _ in seen[0]] == ["role_changed", "muted", "chat", "chat"]
    assert all(s == seen[0] for s in seen)  # same events, same order, once, on every node
    pages = [await client.request("get_attendees") for client in (alice, bob, carol)]
    assert pages[0] == pages[1] == pages[2]
    assert {a["identity"] for a in pages[0]["items"]} == {"alice", "dave", "bob", "carol"}
    for log in logs.values():
        log.stop()
