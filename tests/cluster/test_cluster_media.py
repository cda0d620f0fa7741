"""One room over three nodes (separate processes, real redis-server): media crosses the relay."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import aiohttp
import pytest
from redis.asyncio import Redis

from sfu.relay import RelayPacket, encode
from signaling.client.client import PodiumClient
from signaling.wire.errors import PodiumError
from signaling.wire.tokens import mint_admin_token
from tests.cluster.conftest import Node, RedisServer, StartNode, until
from tests.conftest import API_KEY, API_SECRET, LOOPBACK, eventually, token
from tests.media import Recorder, ToneTrack, dominant_frequency, slot_of, tone_level_db

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


async def test_the_relay_refuses_what_no_cluster_node_sent(
    start_node: StartNode, join: Join, redis: Redis
) -> None:
    a, b = [await start_node(name) for name in ("node-a", "node-b")]
    await join(a, "alice", "host", publish=ToneTrack(440))
    on_b = await join(b, "bob")
    await eventually(lambda: slot_of(on_b, "alice") is not None, timeout=15)
    relay = str(await cast("Awaitable[str]", redis.hget("podium:node:node-b", "relay")))
    host, _, port = relay.rpartition(":")
    forged = encode(RelayPacket(ROOM, "mallory", 0, 1, 960, True, b"\xfc" + bytes(60)), 5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for seq in range(50):  # a loud "speaker" nobody admitted, in clear and in junk
            stranger.sendto(forged if seq % 2 else bytes(80), (host, int(port)))
    await until(lambda: load_of(redis, "node-b"), lambda load: load["relay_refused"] >= 50)
    await hears(on_b, "alice", 440, 1.0)
    assert all("mallory" not in s.history for s in on_b.slots)
    load = await load_of(redis, "node-b")
    assert load["relay_in"] > 50  # alice's packets, from node A
    async with aiohttp.ClientSession() as http, http.get(f"{b.http}/metrics") as reply:
        series = await reply.text()
    assert series_value(series, 'podium_cluster_relay_refused_total{reason="unknown_sender"}') >= 50
    assert series_value(series, 'podium_cluster_relay_packets_total{direction="in"}') > 50
    assert series_value(series, 'podium_cluster_rooms{part="edge"}') == 1
    relayed = series_value(series, 'podium_cluster_relay_latency_seconds_bucket{le="+Inf"}')
    assert relayed == series_value(series, 'podium_cluster_relay_packets_total{direction="in"}')
    assert series_value(series, 'podium_cluster_relay_latency_seconds_bucket{le="0.05"}') > 0


def series_value(text: str, name: str) -> float:
    """One sample's value in a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


async def load_of(redis: Redis, node: str) -> dict[str, Any]:
    load: dict[str, Any] = json.loads(
        await cast("Awaitable[str]", redis.hget(f"podium:node:{node}", "load"))
    )
    return load


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

    await alice.request("move_to_audience", participant="carol")  # back to the audience:
    await eventually(lambda: all(slot_of(c, "carol") is None for c in hearing))  # unheard
    for log in logs.values():
        log.stop()


async def test_origin_killed_the_room_goes_on_elsewhere_as_it_was(
    start_node: StartNode, join: Join, redis: Redis
) -> None:
    a, b, c = [await start_node(name) for name in ("node-a", "node-b", "node-c")]
    alice = await join(a, "alice", "host", publish=ToneTrack(440))  # the origin: A
    bob = await join(b, "bob")
    carol = await join(c, "carol")
    await join(c, "dave")
    await bob.request("raise_hand")
    await carol.request("raise_hand")
    await alice.request("invite_to_stage", participant="carol")
    await carol.request("accept_invite")
    sent = await alice.request("send_chat", text="welcome")
    await alice.request("pin_message", message_id=sent["message"]["id"])
    await alice.request("remove", participant="dave", ban=True)
    await eventually(lambda: slot_of(bob, "alice") is not None, timeout=15)
    before = await bob.request("get_attendees")
    while "dave" in [m["identity"] for m in before["items"]]:  # until the delta is out
        await asyncio.sleep(0.2)
        before = await bob.request("get_attendees")
    await asyncio.sleep(0.3)  # the origin copies its state within 0.1 s
    assert await redis.get(f"podium:room:{ROOM}:origin") == "node-a"

    a.process.send_signal(signal.SIGKILL)
    for client in (alice, bob, carol):  # each resumes by itself, alice through B or C
        await client.next_event("reconnected", timeout=25)
    origin = await redis.get(f"podium:room:{ROOM}:origin")
    assert origin in ("node-b", "node-c")
    assert alice.url in (b.url, c.url)

    after = await bob.request("get_attendees")
    assert after["items"] == before["items"]  # same people, roles and places
    stage = await alice.request("get_stage")
    assert [s["identity"] for s in stage["speakers"]] == ["alice", "carol"]
    assert stage["hand_queue"] == ["bob"]
    history = bob.join_info["chat"]
    assert [m["text"] for m in history["history"]] == ["welcome"]
    assert history["pinned"]["text"] == "welcome"
    with pytest.raises(PodiumError) as refused:
        await join(b, "dave")
    assert refused.value.code == "banned"
    # And the host is heard again, from wherever she came back.
    await eventually(lambda: slot_of(bob, "alice") is not None, timeout=15)
    await hears(bob, "alice", 440, 1.0)


async def test_nodes_come_back_when_redis_does(
    start_node: StartNode, join: Join, redis_server: RedisServer, redis: Redis
) -> None:
    a, b = [await start_node(name) for name in ("node-a", "node-b")]
    redis_server.stop()  # every key, claim and subscription gone with it
    with pytest.raises(ConnectionError, match="cluster_unavailable"):
        await join(a, "early")  # no room can be placed meanwhile: the client is told
    await asyncio.sleep(1.0)
    assert a.process.poll() is None and b.process.poll() is None
    redis_server.start()
    await until(lambda: redis.zcard("podium:nodes"), lambda n: n == 2, timeout=10)
    await join(a, "alice", "host", publish=ToneTrack(440))
    bob = await join(b, "bob")
    await eventually(lambda: slot_of(bob, "alice") is not None, timeout=15)
    await hears(bob, "alice", 440, 1.0)


async def test_moderation_and_the_end_of_the_room_reach_every_node(
    start_node: StartNode, join: Join, redis: Redis
) -> None:
    a, b, c = [await start_node(name) for name in ("node-a", "node-b", "node-c")]
    await join(a, "alice", "listener")  # the room's origin: A
    host = await join(b, "hal", "host", publish=ToneTrack(440))  # a host on an edge
    carol = await join(c, "carol")
    await eventually(lambda: slot_of(carol, "hal") is not None, timeout=15)

    await host.request("remove", participant="carol", ban=True, reason="spam")
    assert (await carol.next_event("disconnected")).data["reason"] == "banned"
    with pytest.raises(PodiumError) as refused:
        await join(a, "carol")  # banned on the origin, whichever node she comes back to
    assert refused.value.code == "banned"

    dave = await join(c, "dave")
    await eventually(lambda: slot_of(dave, "hal") is not None, timeout=15)
    await host.request("end_room")
    for client in (dave, host):
        assert (await client.next_event("disconnected")).data["reason"] == "room_ended"
    # Every node lets the room go: no edge media left, the origin's claim released.
    await until(lambda: load_of(redis, "node-c"), lambda load: load["edge_rooms"] == 0)
    await until(lambda: load_of(redis, "node-b"), lambda load: load["edge_rooms"] == 0)
    await until(lambda: redis.exists(f"podium:room:{ROOM}:origin"), lambda n: n == 0)


async def test_an_edge_killed_its_listeners_resume_through_another_node(
    start_node: StartNode, join: Join
) -> None:
    a, b, c = [await start_node(name) for name in ("node-a", "node-b", "node-c")]
    alice = await join(a, "alice", "host", publish=ToneTrack(440))
    bob = await join(b, "bob")
    await eventually(lambda: slot_of(bob, "alice") is not None, timeout=15)
    log = EventLog(alice)
    loop = asyncio.get_running_loop()
    b.process.send_signal(signal.SIGKILL)  # bob's node: no goodbye from it, ever
    killed = loop.time()
    await bob.next_event("reconnected", timeout=10)  # with its new peer connection up
    assert loop.time() - killed < 5.0
    assert bob.url in (a.url, c.url)
    await eventually(lambda: slot_of(bob, "alice") is not None, timeout=10)
    await hears(bob, "alice", 440, 0.5)  # decoded from the new node at once
    page = await alice.request("get_attendees")
    assert [member["identity"] for member in page["items"]] == ["alice", "bob"]
    assert not any("bob" in data["left"] for _, data in log.named("attendees"))
    log.stop()


async def test_a_full_node_redirects_a_join_and_the_client_follows(
    start_node: StartNode, join: Join
) -> None:
    a = await start_node("node-a", "--max-participants", "1")
    b = await start_node("node-b")
    alice = await join(a, "alice", "host", publish=ToneTrack(440))
    bob = await join(a, "bob")  # A is full: the SDK is sent on to B without the app noticing
    assert bob.url == b.url
    await eventually(lambda: slot_of(bob, "alice") is not None, timeout=15)
    await hears(bob, "alice", 440, 0.5)
    page = await alice.request("get_attendees")
    assert [member["identity"] for member in page["items"]] == ["alice", "bob"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{a.http}/metrics") as response:
            assert series_value(await response.text(), "podium_cluster_redirects_total") == 1
        # A platform asks any node where the room lives (an admin token for that room).
        admin = {"Authorization": f"Bearer {mint_admin_token(API_KEY, API_SECRET, room=ROOM)}"}
        async with http.get(f"{b.http}/v1/rooms/{ROOM}/node", headers=admin) as response:
            assert await response.json() == {"room": ROOM, "node": "node-a", "url": a.url}
        async with http.get(f"{b.http}/v1/rooms/elsewhere/node", headers=admin) as response:
            assert response.status == 403


async def test_sigterm_drain_moves_everyone_without_a_leave_or_a_join(
    start_node: StartNode, join: Join, redis: Redis
) -> None:
    a, b, c = [await start_node(name) for name in ("node-a", "node-b", "node-c")]
    alice = await join(a, "alice", "host", publish=ToneTrack(440))  # the origin: A
    carol = await join(a, "carol")
    bob = await join(b, "bob")
    dave = await join(c, "dave")
    await bob.request("raise_hand")
    await eventually(lambda: all(slot_of(x, "alice") is not None for x in (bob, carol, dave)), 15)
    clients = {"alice": alice, "carol": carol, "bob": bob, "dave": dave}
    logs = {name: EventLog(client) for name, client in clients.items()}
    while (await dave.request("get_attendees"))["total"] < 4:  # the joins' delta is out
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.3)
    seen = {name: len(log.events) for name, log in logs.items()}

    a.process.send_signal(signal.SIGTERM)
    # Each is told and moved, or its edge's room moved: it resumes by itself.
    try:
        await eventually(lambda: all(log.named("reconnected") for log in logs.values()), 20)
    except AssertionError:
        for name, client in clients.items():
            after = [(e, d) for e, d in logs[name].events[seen[name] :] if e != "speaking"]
            print(f"{name}: {client.state} at {client.url}, events since SIGTERM {after}")
        raise
    assert all(log.named("draining") for name, log in logs.items() if name in ("alice", "carol"))
    assert alice.url in (b.url, c.url) and carol.url in (b.url, c.url)
    assert await asyncio.to_thread(a.process.wait, 20) == 0  # A empty: it exits
    assert await redis.get(f"podium:room:{ROOM}:origin") in ("node-b", "node-c")

    await eventually(lambda: all(slot_of(x, "alice") is not None for x in (bob, carol)), 15)
    await hears(bob, "alice", 440, 0.5)
    page = await dave.request("get_attendees")
    assert [m["identity"] for m in page["items"]] == ["alice", "carol", "bob", "dave"]
    assert (await alice.request("get_stage"))["hand_queue"] == ["bob"]
    for name, log in logs.items():
        for event, data in log.events[seen[name] :]:
            if event == "attendees":
                assert not data["joined"] and not data["left"]  # nobody left, nobody came
        log.stop()
