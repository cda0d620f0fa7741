"""Big-room signaling discipline and chat, over real WebSockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from signaling.client.client import Event, PodiumClient
from signaling.room.chat import ChatConfig
from signaling.room.ratelimit import Rate
from signaling.room.settings import RoomSettings
from signaling.server.server import PodiumServer
from signaling.wire.errors import PodiumError
from tests.conftest import make_config, token


async def light_join(
    http: aiohttp.ClientSession, url: str, identity: str
) -> aiohttp.ClientWebSocketResponse:
    """A signaling-only listener: one WebSocket, one join, nothing else."""
    ws = await http.ws_connect(url)
    await ws.send_str(json.dumps({"id": 1, "type": "join", "data": {"token": token(identity)}}))
    while True:
        reply = json.loads((await ws.receive(timeout=10)).data)
        if reply["type"] != "event":
            assert reply["type"] == "response", reply
            return ws


async def collect(client: PodiumClient, into: list[Event]) -> None:
    async for event in client.events():
        into.append(event)


@pytest.mark.slow
async def test_300_joins_reach_existing_participants_as_a_few_batched_deltas(
    server: PodiumServer,
) -> None:
    interval = server.config.room.attendees.batch_interval
    observers = [
        await PodiumClient.connect(server.url, token(name, role), media=False)
        for name, role in (("host", "host"), ("early", "listener"))
    ]
    received: list[list[Event]] = [[], []]
    tasks = [asyncio.create_task(collect(c, r)) for c, r in zip(observers, received, strict=True)]
    await asyncio.sleep(interval * 1.5)  # let the observers' own joins flush
    for r in received:
        r.clear()

    started = time.monotonic()
    # No connection cap: each WebSocket holds its connection for good.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        for batch in range(6):
            sockets += await asyncio.gather(
                *(light_join(http, server.url, f"fan{batch}-{i}") for i in range(50))
            )
        storm = time.monotonic() - started
        await asyncio.sleep(interval * 2.5)
        for events in received:
            deltas = [e for e in events if e.name == "attendees"]
            assert len(events) == len(deltas), [e.name for e in events]
            # Bounded by the batching interval, not by the 300 joins.
            assert len(deltas) <= storm / interval + 3, (len(deltas), storm)
            assert sum(len(d.data["joined"]) for d in deltas) == 300
            assert deltas[-1].data["total"] == 302
            assert deltas[-1].data["counts"]["listener"] == 301
        for ws in sockets:
            await ws.close()
    for client in observers:
        await client.close()
    for task in tasks:
        task.cancel()


@pytest.fixture
async def chat_server() -> AsyncIterator[PodiumServer]:
    chat = ChatConfig(max_length=200, history_size=5, message_rate=Rate(4, 10.0))
    srv = PodiumServer(make_config(room=RoomSettings(chat=chat, empty_timeout=0)))
    await srv.start()
    yield srv
    await srv.stop()


async def test_chat_limits_and_history_for_newcomers(chat_server: PodiumServer) -> None:
    url = chat_server.url
    alice = await PodiumClient.connect(url, token("alice", "host"), media=False)
    bob = await PodiumClient.connect(url, token("bob"), media=False)

    with pytest.raises(PodiumError) as long:
        await bob.request("send_chat", text="x" * 201)
    assert long.value.code == "message_too_long"

    sent = []
    for i in range(4):
        for client, name in ((alice, "alice"), (bob, "bob")):
            reply = await client.request("send_chat", text=f"{name} {i}")
            sent.append(reply["message"]["text"])
    with pytest.raises(PodiumError) as flood:
        await bob.request("send_chat", text="one too many")
    assert flood.value.code == "rate_limited"
    chat_event = await alice.next_event("chat", where=lambda d: d["text"] == "bob 3")
    assert chat_event.data["sender"] == "bob"

    await alice.request("pin_message", message_id=chat_event.data["id"])
    with pytest.raises(PodiumError) as pin:
        await bob.request("pin_message", message_id=chat_event.data["id"])
    assert pin.value.code == "not_permitted"
    with pytest.raises(PodiumError) as emoji:
        await bob.request("react", emoji="💩")
    assert emoji.value.code == "unsupported_reaction"

    carol = await PodiumClient.connect(url, token("carol"), media=False)
    history = carol.join_info["chat"]["history"]
    assert [m["text"] for m in history] == sent[-5:]
    assert carol.join_info["chat"]["pinned"]["text"] == "bob 3"
    for client in (alice, bob, carol):
        await client.close()
