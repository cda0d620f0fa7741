"""Schemathesis against the served OpenAPI document: no 5xx, no response that breaks it.

Bounded (``MAX_EXAMPLES`` per operation, derandomised, no example database) so
that CI runs the same cases every time in well under a minute. The server runs
on its own event loop in a thread, because schemathesis calls it synchronously;
a room with live (signaling-only) participants gives the generated requests
something to find besides 404s.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from signaling.client.client import PodiumClient
from signaling.room.settings import RoomSettings
from signaling.server.server import PodiumServer
from signaling.wire.openapi import spec
from tests.api_helpers import admin
from tests.conftest import make_config, token

ROOM = "town-hall"  # the examples in the document name this room and "ada"
PEOPLE = {"ada": "host", "bob": "speaker", "cy": "listener"}
MAX_EXAMPLES = int(os.environ.get("PODIUM_SCHEMATHESIS_EXAMPLES", "25"))  # CI: 25
schema = schemathesis.openapi.from_dict(spec())


@dataclass
class LiveServer:
    """A PodiumServer on a private event loop in a daemon thread."""

    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    server: PodiumServer | None = None
    clients: list[PodiumClient] = field(default_factory=list)

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self) -> None:
        self.server = PodiumServer(make_config())
        await self.server.start()

    async def ensure_room(self) -> None:
        """Before each example: the room, with its three people (earlier examples may have
        ended it, removed or banned someone); rebuilt only when something is missing."""
        assert self.server is not None
        room = self.server.rooms.get(ROOM)
        if room is not None and not room.stage.ended and set(room.participants) >= set(PEOPLE):
            return
        for client in self.clients:
            await client.close()
        self.clients.clear()
        if room is not None and not room.stage.ended:
            now = time.time()
            room.apply(room.stage.server_end_room(now), now)
            await self.server.release_if_empty(room)
        while ROOM in self.server.rooms:  # its last participants are on their way out
            await asyncio.sleep(0.01)
        await self.server.create_room(ROOM, RoomSettings(empty_timeout=3600))
        for identity, role in PEOPLE.items():
            self.clients.append(
                await PodiumClient.connect(
                    self.server.url, token(identity, role, room=ROOM), media=False
                )
            )

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        if self.server is not None:
            await self.server.stop()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    live = LiveServer()
    thread = threading.Thread(target=live.loop.run_forever, daemon=True)
    thread.start()
    live.run(live.start())
    yield live
    live.run(live.stop())
    live.loop.call_soon_threadsafe(live.loop.stop)
    thread.join(5)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, live: LiveServer) -> None:  # type: ignore[type-arg]
    # A cursor is opaque: no schema can say which strings are ones the server handed out,
    # so a made-up one is rightly refused (400) although it is "schema-valid".
    made_up_cursor = case.path.endswith("/participants") and "cursor" in (case.query or {})
    live.run(live.ensure_room())
    case.call_and_validate(
        base_url=live.base,
        headers={"Authorization": f"Bearer {admin()}"},
        excluded_checks=[positive_data_acceptance] if made_up_cursor else None,
    )
