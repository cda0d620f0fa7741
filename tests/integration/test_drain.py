"""SIGTERM drains a real ``podium serve``: no new joins, recordings finished, clients told."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import av
import pytest

from benchmarks.common import free_port, server_command, wait_healthy
from signaling.client.client import Event, PodiumClient
from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
from signaling.wire.errors import PodiumError
from signaling.wire.tokens import mint_token
from tests.conftest import LOOPBACK, eventually
from tests.media import ToneTrack


class Served:
    def __init__(self, tmp: Path, drain_timeout: float) -> None:
        self.port = free_port()
        self.recordings = tmp / "recordings"
        self.recordings.mkdir()
        self.log = tmp / "server.log"
        command = server_command(
            "signaling.server.cli", self.port, 3,
            "--recordings-dir", str(self.recordings), "--drain-timeout", str(drain_timeout),
        )  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_healthy(self.port, self.process, 30)
        self.url = f"ws://127.0.0.1:{self.port}/rtc"

    def readyz(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    async def join(self, identity: str, role: str = "listener", **kw: object) -> PodiumClient:
        token = mint_token(DEV_API_KEY, DEV_API_SECRET, identity=identity, room="r", role=role)
        return await PodiumClient.connect(self.url, token, host_addresses=LOOPBACK, **kw)  # type: ignore[arg-type]


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    server = Served(tmp_path, getattr(request, "param", 20.0))
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


async def _collect(client: PodiumClient, into: list[Event]) -> None:
    async for event in client.events():
        into.append(event)


@pytest.fixture
async def watching() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()


async def test_sigterm_refuses_joins_finishes_the_recording_tells_everyone_and_exits(
    served: Served, watching: list[asyncio.Task[None]]
) -> None:
    host = await served.join("host", "host", publish=ToneTrack(440))
    listener = await served.join("lou")
    await listener.wait_connected()
    seen: dict[str, list[Event]] = {"host": [], "lou": []}
    for name, client in (("host", host), ("lou", listener)):
        watching.append(asyncio.create_task(_collect(client, seen[name])))
    recording = await host.request("start_recording")
    await asyncio.sleep(1.5)

    served.process.send_signal(signal.SIGTERM)
    await eventually(lambda: served.readyz() == 503)
    for events in seen.values():
        await eventually(lambda events=events: "draining" in [e.name for e in events])  # type: ignore[misc]
    assert "recording_finished" in [e.name for e in seen["host"]]
    with pytest.raises(PodiumError) as refused:
        await served.join("late", media=False)
    assert refused.value.code == "server_draining"

    started = time.monotonic()
    await host.leave()
    await listener.leave()
    assert await asyncio.to_thread(served.process.wait, 10) == 0
    assert time.monotonic() - started < 5  # it went when the room emptied, not at the timeout

    path = served.recordings / recording["recording"]
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(audio=0) if p.size]
    assert len(packets) * 0.02 > 1.0  # over a second of Opus, readable to the end


@pytest.mark.parametrize("served", [2.0], indirect=True)
async def test_clients_that_stay_are_disconnected_at_the_drain_timeout(
    served: Served, watching: list[asyncio.Task[None]]
) -> None:
    listener = await served.join("lou", media=False)
    events: list[Event] = []
    watching.append(asyncio.create_task(_collect(listener, events)))
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(served.process.wait, 15) == 0
    await eventually(lambda: listener.state == "disconnected")
    names = [e.name for e in events]
    assert "draining" in names
    assert [e.data["reason"] for e in events if e.name == "disconnected"] == ["server_shutdown"]
    await listener.close()
