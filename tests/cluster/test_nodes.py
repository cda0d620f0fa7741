"""Nodes register in Redis, list each other, and are forgotten when they die."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import cast

import aiohttp
from redis.asyncio import Redis

from signaling.wire.tokens import mint_admin_token
from tests.cluster.conftest import REPO, StartNode, free_port, until
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


async def test_workers_start_one_node_per_process_on_consecutive_ports(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    port = free_port_pair()
    command = [
        sys.executable, "-m", "signaling.server.cli", "serve",
        "--api-key", API_KEY, "--api-secret", API_SECRET, "--host", "127.0.0.1",
        "--port", str(port), "--udp-port", "0", "--announce-address", "127.0.0.1",
        "--relay-address", "127.0.0.1", "--redis", redis_url, "--workers", "2",
        "--node-id", "w",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "workers.log"
    with log.open("wb") as out:
        parent = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        await until(lambda: redis.zcard("podium:nodes"), lambda n: n == 2, timeout=30)
        ids = await redis.zrange("podium:nodes", 0, -1)
        assert sorted(ids) == ["w-0", "w-1"]
        urls = {await cast("Awaitable[str]", redis.hget(f"podium:node:{i}", "url")) for i in ids}
        assert urls == {f"ws://127.0.0.1:{port}/rtc", f"ws://127.0.0.1:{port + 1}/rtc"}
    finally:
        parent.send_signal(signal.SIGTERM)  # passed on to every node
        assert parent.wait(15) == 0, log.read_text()[-3000:]
    assert await redis.zcard("podium:nodes") == 0  # each node said goodbye


def free_port_pair() -> int:
    """A TCP port P with P + 1 free too (right now)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


async def test_a_room_is_created_only_on_its_origin(start_node: StartNode) -> None:
    a = await start_node("node-a")
    b = await start_node("node-b")
    admin = {"Authorization": f"Bearer {mint_admin_token(API_KEY, API_SECRET)}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{a.http}/v1/rooms", json={"name": "r1"}, headers=admin) as made:
            assert made.status == 201
        async with http.post(f"{b.http}/v1/rooms", json={"name": "r1"}, headers=admin) as split:
            assert split.status == 409
            assert "node-a" in (await split.json())["error"]["message"]
