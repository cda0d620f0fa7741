"""Webhooks: the sans-I/O queue, signatures, and delivery to a real receiver on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from signaling import WebhookError, verify_webhook
from signaling.client.client import PodiumClient
from signaling.server.config import WebhookConfig
from signaling.server.server import PodiumServer
from signaling.server.webhooks import EVENTS, Backoff, WebhookEvent, WebhookQueue
from signaling.wire.openapi import spec
from signaling.wire.webhook_verify import sign_webhook
from tests.api_helpers import Api, Receiver, running
from tests.conftest import API_KEY, API_SECRET, LOOPBACK, make_config, token
from tests.rooms import media_of

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2, "request_timeout": 1.0, "drain_timeout": 2.0}


def event(room: str, seq: int) -> WebhookEvent:
    return WebhookEvent(f"EV_{room}_{seq}", "hand_raised", room, f"RM_{room}", seq, 0.0, {})


# -- the queue (sans-I/O) ---------------------------------------------------------------


def test_queue_keeps_rooms_in_order_and_lets_rooms_pass_each_other() -> None:
    queue = WebhookQueue(100, Backoff(1.0, 8.0), max_attempts=5)
    for seq in (1, 2):
        for room in ("a", "b"):
            queue.push(event(room, seq), b"", now=0.0)
    first_a, first_b = queue.pop_ready(0.0), queue.pop_ready(0.0)
    assert first_a is not None and first_b is not None
    assert (first_a.event.id, first_b.event.id) == ("EV_a_1", "EV_b_1")
    assert queue.pop_ready(0.0) is None  # a1 and b1 in flight: a2, b2 wait their turn
    assert queue.failed(first_a, now=0.0) == 1.0  # a is held back by its retry...
    queue.succeeded(first_b, now=0.0)
    second_b = queue.pop_ready(0.0)  # ...while b goes on
    assert second_b is not None and second_b.event.id == "EV_b_2"
    assert queue.pop_ready(0.5) is None and queue.next_due() == 1.0
    retry = queue.pop_ready(1.0)
    assert retry is first_a and retry.attempts == 2
    queue.succeeded(retry, 1.0)
    queue.succeeded(second_b, 1.0)
    last = queue.pop_ready(1.0)
    assert last is not None and last.event.id == "EV_a_2"
    queue.succeeded(last, 1.0)
    assert (len(queue), queue.delivered, queue.failed_attempts, queue.next_due()) == (0, 4, 1, None)


def test_backoff_doubles_up_to_its_maximum_then_the_event_is_given_up() -> None:
    queue = WebhookQueue(10, Backoff(0.5, 4.0), max_attempts=6)
    queue.push(event("a", 1), b"", 0.0)
    queue.push(event("a", 2), b"", 0.0)
    now, waits = 0.0, []
    while (delivery := queue.pop_ready(now)) is not None and delivery.event.seq == 1:
        due = queue.failed(delivery, now)
        if due is None:
            break
        waits.append(due - now)
        now = due
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert queue.expired == 1  # counted, and the room's next event goes on
    nxt = queue.pop_ready(now)
    assert nxt is not None and nxt.event.seq == 2


def test_a_full_queue_drops_new_events_and_counts_them() -> None:
    queue = WebhookQueue(3, Backoff(1.0, 1.0), max_attempts=1)
    accepted = [queue.push(event("a", seq), b"", 0.0) for seq in range(1, 6)]
    assert accepted == [True, True, True, False, False]
    assert (queue.dropped, len(queue)) == (2, 3)


# -- signatures ---------------------------------------------------------------------------


def test_verify_webhook_accepts_podiums_signature_only() -> None:
    body = b'{"id":"EV_1","event":"room_started"}'
    signed = {"Authorization": sign_webhook(body, API_KEY, API_SECRET)}
    assert verify_webhook(body, signed, API_SECRET)["id"] == "EV_1"
    assert verify_webhook(body, {"authorization": "Bearer " + signed["Authorization"]}, API_SECRET)
    cases: list[tuple[bytes, dict[str, str], str, dict[str, Any]]] = [
        (body + b" ", signed, API_SECRET, {}),  # body altered
        (body, signed, "another-secret-0123456789abcdef01234", {}),  # forged
        (body, {}, API_SECRET, {}),  # unsigned
        (body, signed, API_SECRET, {"now": 10**10}),  # replayed long after
        (body, signed, API_SECRET, {"api_key": "someone-else"}),
        (body, {"Authorization": "garbage"}, API_SECRET, {}),
    ]
    for raw, headers, secret, kw in cases:
        with pytest.raises(WebhookError):
            verify_webhook(raw, headers, secret, **kw)


def test_every_event_is_described_in_the_openapi_document() -> None:
    described = spec()["webhooks"]
    assert set(described) == set(EVENTS)
    expected = {"room_started", "room_finished", "participant_joined", "participant_left"}
    assert expected | {"participant_role_changed", "hand_raised"} <= set(EVENTS)


# -- delivery to a real receiver ------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running(Receiver()) as r:
        yield r


async def start_server(receiver: Receiver, **webhooks: Any) -> PodiumServer:
    config = make_config(webhooks=WebhookConfig(urls=(receiver.url,), **{**FAST, **webhooks}))
    server = PodiumServer(config)
    await server.start()
    return server


@pytest.fixture
async def hooked(receiver: Receiver) -> AsyncIterator[PodiumServer]:
    server = await start_server(receiver)
    yield server
    await server.stop()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Any]]:
    opened: list[PodiumClient] = []

    async def _connect(
        server: PodiumServer, identity: str, role: str = "listener", room: str = "room1"
    ) -> PodiumClient:
        client = await PodiumClient.connect(
            server.url, token(identity, role, room=room), host_addresses=LOOPBACK, media=False
        )
        opened.append(client)
        return client

    yield _connect
    for client in opened:
        await client.close()


async def test_a_rooms_life_arrives_signed_in_order_and_as_the_spec_says(
    hooked: PodiumServer, receiver: Receiver, clients: Callable[..., Any]
) -> None:
    async with aiohttp.ClientSession() as http:
        api = Api(hooked, http)
        await api("POST", "/v1/rooms", json_body={"name": "room1", "metadata": {"event": 42}})
        host = await clients(hooked, "host", "host")
        fan = await clients(hooked, "fan")
        await fan.request("raise_hand")
        await host.request("lower_hand", participant="fan")
        await api(
            "PATCH",
            "/v1/rooms/{room}/participants/{identity}",
            json_body={"role": "speaker", "name": "Fan"},
            room="room1",
            identity="fan",
        )
        await fan.request("unmute")  # the stage is entered self-muted
        await host.request("mute", participant="fan")
        await api(
            "DELETE",
            "/v1/rooms/{room}/participants/{identity}",
            room="room1",
            identity="fan",
            params={"ban": "true", "reason": "spam"},
        )
        await host.request("end_room")
        await receiver.wait_for(lambda: "room_finished" in receiver.names("room1"))
    names = receiver.names("room1")
    assert names == [
        "room_started",
        "participant_joined",
        "participant_joined",
        "hand_raised",
        "hand_lowered",
        "participant_role_changed",
        "participant_updated",
        "participant_muted",
        "participant_muted",
        "participant_removed",
        "participant_left",
        "participant_left",
        "room_finished",
    ]
    events = receiver.events("room1")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["room"]["sid"] for e in events}) == 1
    assert len({e["id"] for e in events}) == len(events)
    started, finished = events[0], events[-1]
    assert started["data"]["metadata"] == {"event": 42}
    assert finished["data"]["reason"] == "ended" and finished["data"]["ended_by"] == "host"
    attended = {r["identity"]: r for r in finished["data"]["attendance"]}
    assert set(attended) == {"host", "fan"}
    assert [r["role"] for r in attended["fan"]["visits"][0]["roles"]] == ["listener", "speaker"]
    by_name = {e["event"]: e["data"] for e in events}
    assert by_name["participant_role_changed"] == {
        "participant": "fan",
        "old": "listener",
        "new": "speaker",
        "by": "",
    }
    assert by_name["participant_removed"]["by"] == ""
    left = [e["data"] for e in events if e["event"] == "participant_left"]
    assert left == [
        {"participant": "fan", "reason": "banned"},
        {"participant": "host", "reason": "room_ended"},
    ]
    assert receiver.rejected == 0
    headers = receiver.received[0].headers
    assert headers["X-Podium-Event-Id"] == events[0]["id"]


async def test_receiver_down_then_back_gets_every_event_once_after_dedup(
    receiver: Receiver, clients: Callable[..., Any]
) -> None:
    server = await start_server(receiver)
    emitted: list[WebhookEvent] = []
    emit = server.webhooks.emit

    def recording(*args: Any) -> WebhookEvent | None:
        event = emit(*args)
        assert event is not None
        emitted.append(event)
        return event

    server.webhooks.emit = recording  # type: ignore[method-assign, assignment]
    # Lose one acknowledgement: the event was received, so its retry is a duplicate.
    lost: set[str] = set()

    def lose_first_ack(event: dict[str, Any]) -> int | None:
        if event["event"] == "hand_raised" and not lost:
            lost.add(event["id"])
            return 503
        return None

    receiver.fault = lose_first_ack
    try:
        await clients(server, "a-host", "host", room="a")
        await receiver.stop()  # down
        b = await clients(server, "b-fan", room="b")
        fan = await clients(server, "a-fan", room="a")
        await fan.request("raise_hand")
        await b.leave()
        await asyncio.sleep(0.5)  # several failed attempts, backing off
        assert server.webhooks.queues[receiver.url].failed_attempts > 0
        await receiver.start()  # back, on the same port
        await receiver.wait_for(
            lambda: {e.id for e in emitted} <= {e["id"] for e in receiver.events()}
        )
    finally:
        await server.stop()
    assert lost and sum(r.event["id"] in lost for r in receiver.received) == 2  # a duplicate
    for room in ("a", "b"):
        mine = [e for e in emitted if e.room == room]
        got = receiver.events(room)
        assert [e["id"] for e in got] == [e.id for e in mine]  # all, once, in order
        assert [e["seq"] for e in got] == list(range(1, len(got) + 1))
    assert receiver.names("b")[-1] == "room_finished"
    assert server.webhooks.dropped == 0 and server.webhooks.expired == 0


async def test_a_full_queue_drops_and_counts_and_keeps_the_room_going(
    receiver: Receiver, clients: Callable[..., Any]
) -> None:
    await receiver.stop()
    server = await start_server(receiver, queue_size=3, drain_timeout=0.2)
    try:
        fans = [await clients(server, f"fan{i}") for i in range(3)]
        await fans[0].request("raise_hand")  # the room works on regardless
        assert server.webhooks.dropped == 2  # room_started, 3 joins, a hand: 3 fit
        assert len(server.webhooks.queues[receiver.url]) == 3
    finally:
        await server.stop()


async def test_a_slow_receiver_for_one_room_does_not_hold_up_another(
    receiver: Receiver, clients: Callable[..., Any]
) -> None:
    release = asyncio.Event()
    original = receiver._handle

    async def slow_for_a(request: Any) -> Any:
        if request.headers.get("X-Podium-Event") and b'"name":"a"' in await request.read():
            await release.wait()
        return await original(request)

    receiver._handle = slow_for_a  # type: ignore[method-assign]
    await receiver.stop()
    await receiver.start()
    server = await start_server(receiver)
    try:
        await clients(server, "a1", room="a")
        await clients(server, "b1", room="b")
        opening = ["room_started", "participant_joined"]
        await receiver.wait_for(lambda: receiver.names("b") == opening)
        assert receiver.names("a") == []
        release.set()
        await receiver.wait_for(lambda: receiver.names("a") == opening)
    finally:
        release.set()
        await server.stop()


async def test_ending_and_recreating_a_room_at_once_finishes_the_old_one_first(
    hooked: PodiumServer, receiver: Receiver, clients: Callable[..., Any]
) -> None:
    async with aiohttp.ClientSession() as http:
        api = Api(hooked, http)
        await api("POST", "/v1/rooms", json_body={"name": "room1"})
        first = hooked.rooms["room1"]
        await clients(hooked, "host", "host")
        await clients(hooked, "fan")
        assert (await api("DELETE", "/v1/rooms/{room}", room="room1")).status == 204
        again = await api("POST", "/v1/rooms", json_body={"name": "room1"})  # no pause
        assert again.status == 201 and again.body["sid"] != first.sid
        await receiver.wait_for(lambda: receiver.names("room1").count("room_started") == 2)
    names = receiver.names("room1")
    assert names[names.index("room_finished") + 1 :] == ["room_started"]
    assert [e["room"]["sid"] for e in receiver.events("room1")][-1] == again.body["sid"]
    assert not first.participants and not media_of(first).peers
