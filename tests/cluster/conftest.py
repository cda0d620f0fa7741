"""Fixtures: a real redis-server on a free loopback port, Podium nodes as separate processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.cluster.nodes import REPO, Node, RedisServer, free_port, launch_node, stop_nodes

__all__ = ["REPO", "Node", "RedisServer", "StartNode", "free_port", "until"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


StartNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def start_node(redis_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[StartNode]:
    """``podium serve --redis`` processes on loopback; ready once registered in Redis."""
    nodes: list[Node] = []

    async def start(node_id: str, *extra: str) -> Node:
        node = await launch_node(redis_url, redis, node_id, tmp_path, *extra)
        nodes.append(node)
        return node

    yield start
    stop_nodes(nodes)


async def until(
    read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float = 10.0
) -> None:
    """Poll an async read until ``done`` holds for its value."""
    async with asyncio.timeout(timeout):
        while not done(await read()):
            await asyncio.sleep(0.05)
