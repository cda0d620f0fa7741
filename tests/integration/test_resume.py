"""Sessions survive the network: a cut path gives the seat back, not a leave and a join.

Each client under test reaches the server through a ``tests.netcut.Link`` (a
TCP proxy and a UDP relay on loopback) that the test cuts and restores.  The
others in the room (a host on its own, uncut connection) must never see the
cut participant leave; its audio must be back within 2 s of the link's return
without the app doing anything.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
import pytest

from sfu.config import MediaConfig
from signaling.client.client import Event, PodiumClient
from signaling.server.server import PodiumServer
from tests.conftest import LOOPBACK, eventually, make_config, token
from tests.media import ToneTrack
from tests.netcut import Link, client_class


@dataclass
class Watched:
    """A client and everything it has been through."""

    client: PodiumClient
    arrivals: list[float] = field(default_factory=list)  # speaker packets in slot 0
    events: list[Event] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def packets_since(self, since: float) -> int:
        return sum(1 for t in self.arrivals if t >= since)

    def left(self, identity: str) -> bool:
        return any(e.name == "attendees" and identity in e.data["left"] for e in self.events)


async def _watch(watched: Watched) -> None:
    async for event in watched.client.events():
        watched.events.append(event)


class Room:
    def __init__(self, server: PodiumServer) -> None:
        self.server = server
        self.links: list[Link] = []
        self.watched: list[Watched] = []

    async def join(
        self, identity: str, role: str = "listener", cut: bool = False, **kw: Any
    ) -> tuple[Watched, Link | None]:
        assert self.server.udp is not None
        link = None
        cls = PodiumClient
        url = self.server.url
        if cut:
            link = await Link(self.server.port, self.server.udp.port).start()
            self.links.append(link)
            cls, url = client_class(link), link.url
        arrivals: list[float] = []
        client = await cls.connect(
            url,
            token(identity, role),
            host_addresses=LOOPBACK,
            on_packet=lambda slot, _p: arrivals.append(time.monotonic()) if slot == 0 else None,
            **kw,
        )
        watched = Watched(client, arrivals)
        watched.task = asyncio.create_task(_watch(watched))
        self.watched.append(watched)
        if client.pc is not None:
            await client.wait_connected()
        return watched, link

    async def close(self) -> None:
        for watched in self.watched:
            await watched.client.close()
            if watched.task is not None:
                await asyncio.wait([watched.task], timeout=2)
        for link in self.links:
            await link.close()


async def _room(**config: Any) -> AsyncIterator[Room]:
    server = PodiumServer(make_config(**config))
    await server.start()
    room = Room(server)
    try:
        yield room
    finally:
        await room.close()
        await server.stop()


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    async for r in _room():
        yield r


@pytest.fixture
async def short_window() -> AsyncIterator[Room]:
    async for r in _room(resume_window=3.0, keepalive_interval=1.0):
        yield r


async def _audio_flowing(watched: Watched, within: float = 10.0) -> float:
    """Wait for speaker packets to arrive steadily; return when they started again."""
    start = time.monotonic()
    await eventually(lambda: watched.packets_since(start) >= 5, timeout=within)
    return min(t for t in watched.arrivals if t >= start)


async def _cut_listener(room: Room, seconds: float) -> None:
    speaker, _ = await room.join("speaker", "speaker", publish=ToneTrack(440), media=True)
    host, _ = await room.join("host", "host", media=False)
    listener, link = await room.join("lou", cut=True)
    assert link is not None
    await _audio_flowing(listener)

    link.cut()
    await asyncio.sleep(seconds)
    restored = time.monotonic()
    link.restore()
    back = await _audio_flowing(listener)
    assert back - restored < 2.0, f"audio back {back - restored:.2f} s after the link"

    await eventually(lambda: listener.client.state == "connected", timeout=10)
    assert "disconnected" not in listener.names()
    assert not host.left("lou")
    seat = room.server.rooms["room1"]
    assert "lou" in seat.participants and "lou" in seat.stage
    # The resumed session works: a request round-trips over the new socket.
    assert (await listener.client.request("ping"))["time"] > 0
    if seconds > 8:  # long enough for the server to notice: the others were told
        assert "reconnecting" in listener.names()
        await eventually(lambda: "reconnected" in host.names())
        assert "reconnecting" in host.names()
    del speaker


async def test_a_listener_cut_for_3_s_hears_again_and_never_left(room: Room) -> None:
    await _cut_listener(room, 3.0)


@pytest.mark.slow
async def test_a_listener_cut_for_10_s_hears_again_and_never_left(room: Room) -> None:
    await _cut_listener(room, 10.0)


@pytest.mark.slow
async def test_a_listener_cut_for_25_s_hears_again_and_never_left(room: Room) -> None:
    await _cut_listener(room, 25.0)


async def _cut_past_the_window(room: Room, seconds: float, heartbeat: float = 5.0) -> None:
    host, _ = await room.join("host", "host", media=False)
    listener, link = await room.join("lou", cut=True, heartbeat=heartbeat)
    assert link is not None
    link.cut()
    await asyncio.sleep(seconds)
    link.restore()
    await eventually(lambda: host.left("lou"))
    await eventually(lambda: "disconnected" in listener.names())
    reasons = [e.data["reason"] for e in listener.events if e.name == "disconnected"]
    assert reasons and reasons[0] in ("resume_failed", "resume_timeout")
    assert listener.client.state == "disconnected"
    assert "lou" not in room.server.rooms["room1"].participants
    assert [e.name for e in host.events].count("reconnecting") == 1


@pytest.mark.slow  # over 5 s: runs in CI, not in the quick default tier
async def test_a_cut_longer_than_the_resume_window_ends_in_disconnected(
    short_window: Room,
) -> None:
    # A 3 s window, noticed within 1.5 s on both sides: over well before the link returns.
    await _cut_past_the_window(short_window, 8.0, heartbeat=1.0)


@pytest.mark.slow
async def test_a_45_s_cut_ends_in_disconnected_after_the_30_s_window(room: Room) -> None:
    await _cut_past_the_window(room, 45.0)


@pytest.fixture
async def quick_consent(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Room]:
    """The server gives up on a silent media path after 1.5 s (30 s by default)."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.25)  # the clients' check pace
    async for r in _room(media=MediaConfig(announce_addresses=LOOPBACK, ice_consent_timeout=1.5)):
        yield r


async def test_a_lost_media_path_alone_is_renegotiated_on_a_new_peer_connection(
    quick_consent: Room,
) -> None:
    room = quick_consent
    await room.join("speaker", "speaker", publish=ToneTrack(440))
    listener, link = await room.join("lou", cut=True)
    assert link is not None
    await _audio_flowing(listener)
    first_pc = listener.client.pc
    link.cut(tcp=False)  # the media path only: the WebSocket stays up
    await eventually(lambda: "media_lost" in listener.names(), timeout=10)
    link.restore()
    await _audio_flowing(listener)
    assert listener.client.pc is not first_pc
    assert "lou" in room.server.rooms["room1"].participants
    assert "reconnecting" not in listener.names()


async def _cut_speaker(room: Room, seconds: float) -> None:
    speaker, link = await room.join("sam", "speaker", cut=True, publish=ToneTrack(440))
    listener, _ = await room.join("lou")
    assert link is not None
    await eventually(lambda: listener.client.slots[0].participant == "sam")
    await _audio_flowing(listener)
    stage = room.server.rooms["room1"].stage
    place = [m.id for m in stage.members() if m.on_stage].index("sam")

    link.cut()
    await asyncio.sleep(seconds)
    restored = time.monotonic()
    link.restore()
    back = await _audio_flowing(listener)
    # A speaker whose peer connection died needs a new one: the new uplink numbers its
    # packets afresh, and the listeners' streams must run on from where they were (when
    # they jumped instead, SRTP refused them as replays half the time, for up to minutes).
    assert back - restored < 2.0, f"heard again {back - restored:.2f} s after the link"
    assert listener.client.slots[0].participant == "sam"
    assert stage.member("sam").role == "speaker" and not stage.member("sam").muted
    assert [m.id for m in stage.members() if m.on_stage].index("sam") == place
    assert not listener.left("sam")
    await eventually(lambda: speaker.client.state == "connected", timeout=10)


@pytest.mark.slow  # over 5 s: runs in CI, not in the quick default tier
async def test_a_speaker_whose_media_path_died_is_heard_again_on_a_new_one(
    quick_consent: Room,
) -> None:
    await _cut_speaker(quick_consent, 3.0)


@pytest.mark.slow
async def test_a_speaker_cut_for_10_s_is_back_on_stage_and_heard(room: Room) -> None:
    await _cut_speaker(room, 10.0)


async def test_a_socket_the_client_closes_itself_is_a_leave_not_a_lost_link(room: Room) -> None:
    host, _ = await room.join("host", "host", media=False)
    listener, _ = await room.join("lou", media=False)

    def announced() -> bool:  # a join and a leave inside one batch would cancel out
        deltas = [e.data for e in host.events if e.name == "attendees"]
        return any(p["identity"] == "lou" for d in deltas for p in d["joined"])

    await eventually(announced)
    await listener.client.close()  # a normal closure (1000): the app is done
    await eventually(lambda: host.left("lou"), timeout=5)
    assert "reconnecting" not in host.names()


@pytest.fixture
async def quick_loss() -> AsyncIterator[Room]:
    """The server notices a dead socket within ~1.5 s and holds the seat 10 s."""
    async for r in _room(resume_window=10.0, keepalive_interval=1.0):
        yield r


@pytest.mark.parametrize(
    ("request_kind", "data", "reason"),
    [
        ("remove", {"participant": "lou"}, "removed"),
        ("remove", {"participant": "lou", "ban": True}, "banned"),
        ("end_room", {}, "room_ended"),
    ],
)
async def test_a_seat_ended_while_the_link_was_down_is_told_on_return(
    quick_loss: Room, request_kind: str, data: dict[str, Any], reason: str
) -> None:
    """Removed, banned or the room ended while the connection was down: the client that
    comes back within the window learns why, not only that its seat is gone."""
    room = quick_loss
    host, _ = await room.join("host", "host", media=False)
    listener, link = await room.join("lou", cut=True, media=False, heartbeat=1.0)
    assert link is not None
    seats = room.server.rooms["room1"].seats
    link.cut()
    await eventually(lambda: seats.held("lou") is not None, timeout=10)
    await host.client.request(request_kind, **data)
    link.restore()
    await eventually(lambda: listener.client.state == "disconnected", timeout=10)
    await eventually(lambda: "disconnected" in listener.names())
    assert [e.data["reason"] for e in listener.events if e.name == "disconnected"] == [reason]
    assert listener.client.closed_reason == reason
    assert "reconnected" not in listener.names()


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run podium.js")
async def test_podium_js_is_told_of_a_ban_made_while_its_link_was_down(
    quick_loss: Room, tmp_path: Path
) -> None:
    """The browser SDK, run by Node over a real WebSocket, surfaces the server's reason."""
    room = quick_loss
    host, _ = await room.join("host", "host", media=False)
    assert room.server.udp is not None
    link = await Link(room.server.port, room.server.udp.port).start()
    room.links.append(link)
    sdk = tmp_path / "podium.mjs"  # an ES module to Node
    repo = Path(__file__).resolve().parents[2]
    sdk.write_text((repo / "signaling" / "static" / "podium.js").read_text())
    node = await asyncio.create_subprocess_exec(
        "node", "--experimental-websocket", str(Path(__file__).with_name("node_client.mjs")),
        sdk.as_uri(), link.url, token("lou"),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert node.stdout is not None
    events: list[dict[str, Any]] = []

    async def read() -> None:
        assert node.stdout is not None
        async for line in node.stdout:
            events.append(json.loads(line))

    reader = asyncio.create_task(read())
    try:
        await eventually(lambda: {"event": "joined"} in events, timeout=10)
        seats = room.server.rooms["room1"].seats
        link.cut()
        await eventually(lambda: seats.held("lou") is not None, timeout=10)
        await host.client.request("remove", participant="lou", ban=True)
        link.restore()
        await eventually(lambda: any(e["event"] == "finished" for e in events), timeout=15)
    finally:
        if node.returncode is None:
            node.kill()
        await node.wait()
        reader.cancel()
    told = [e["data"]["reason"] for e in events if e["event"] == "disconnected"]
    assert told == ["banned"] and events[-1] == {"event": "finished", "reason": "banned"}
