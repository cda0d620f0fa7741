"""Nodes register in Redis, list each other, and are forgotten when they die."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from redis.asyncio import Redis

from signaling.wire.tokens import mint_admin_token
from tests.cluster.conftest import StartNode
from tests.conftest import API_KEY, API_SECRET, eventually


async def test_nodes_register_list_each_other_and_expire(
    start_node: StartNode, redis: Redis
) -> None:
    a = await start_node("node-a")
    b = await start_node("node-b")
    admin = mint_admin_token(API_KEY, API_SECRET)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{b.http}/v1/nodes", headers={"Authorization": f"Bearer {admin}"}
        ) as reply:
            assert reply.status == 200
            body = await reply.json()
        room_admin = mint_admin_token(API_KEY, API_SECRET, room="r1")
        async with http.get(
            f"{a.http}/v1/nodes", headers={"Authorization": f"Bearer {room_admin}"}
        ) as refused:
            assert refused.status == 403
        async with http.get(f"{a.http}/v1/nodes") as anonymous:
            assert anonymous.status == 401
    assert body["this"] == "node-b"
    listed = {n["id"]: n for n in body["nodes"]}
    assert set(listed) == {"node-a", "node-b"}
    assert listed["node-a"]["url"] == a.url
    assert listed["node-a"]["media_port"] > 0
    assert listed["node-a"]["relay"].startswith("127.0.0.1:")
    assert set(listed["node-a"]["load"]) >= {"cpu", "participants", "rooms", "relay_streams"}
    assert 0 < await redis.pttl("podium:node:node-a") <= 5000

    a.process.send_signal(signal.SIGKILL)  # no goodbye: the TTL forgets it
    await eventually(lambda: a.process.poll() is not None)
    await until(lambda: redis.exists("podium:node:node-a"), lambda n: n == 0, timeout=8)
    await until(lambda: redis.zrange("podium:nodes", 0, -1), lambda ids: ids == ["node-b"])


async def until(
    read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float = 10.0
) -> None:
    """Poll an async read until ``done`` holds for its value."""
    async with asyncio.timeout(timeout):
        while not done(await read()):
            await asyncio.sleep(0.05)
