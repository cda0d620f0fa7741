"""The frames a real server sends match the schema generated from the response and event
types; the Python client refuses a server of another protocol version; a server API create
out of the token's scope is 403 before a bad field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from signaling.client.client import IncompatibleServer, PodiumClient
from signaling.server.server import PodiumServer
from signaling.wire.messages import EVENTS, PROTOCOL_VERSION, RESPONSES, protocol_schema
from tests.api_helpers import Api, admin
from tests.conftest import Connect, token

SCHEMA = protocol_schema()
_REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:podium-ws", Resource.from_contents(SCHEMA, default_specification=DRAFT202012)
)


def check(kind: str, name: str, data: Any) -> None:
    """Validate ``data`` against the generated schema of response/event ``name``."""
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"urn:podium-ws#/{kind}/{name}"}, registry=_REGISTRY
    )
    validator.validate(data)


async def _request(ws: aiohttp.ClientWebSocketResponse, rid: int, kind: str, **data: Any) -> Any:
    await ws.send_str(json.dumps({"id": rid, "type": kind, "data": data}))
    events: list[dict[str, Any]] = []
    while True:
        frame = json.loads((await ws.receive()).data)
        if frame["type"] == "event":
            events.append(frame)
            continue
        assert frame["id"] == rid, frame
        return frame, events


async def test_real_frames_match_the_generated_schema(
    server: PodiumServer, connect: Connect
) -> None:
    listener = await connect("lena", "listener", media=False)
    seen_events: dict[str, list[Any]] = {}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        calls: list[tuple[str, dict[str, Any]]] = [
            ("join", {"token": token("hana", "host")}),
            ("ping", {}),
            ("get_stage", {}),
            ("get_attendees", {"limit": 10}),
            ("get_attendance", {}),
            ("send_chat", {"text": "hello"}),
            ("react", {"emoji": "👍", "message_id": 1}),
            ("pin_message", {"message_id": 1}),
            ("pin_message", {}),
            ("invite_to_stage", {"participant": "lena"}),
            ("cancel_invite", {"participant": "lena"}),
            ("set_media_mode", {"mode": "mix"}),
            ("mute", {}),
            ("unmute", {}),
            ("remove", {"participant": "lena", "reason": "test"}),
            ("end_room", {}),
        ]
        for rid, (kind, data) in enumerate(calls, 1):
            frame, events = await _request(ws, rid, kind, **data)
            assert frame["type"] == "response", frame
            if kind in RESPONSES:
                check("response", kind, frame["data"])
            else:
                assert frame["data"] == {}, (kind, frame)
            for event in events:
                seen_events.setdefault(event["event"], []).append(event["data"])
        async for message in ws:  # room_ended, disconnected, then the close
            event = json.loads(message.data)
            seen_events.setdefault(event["event"], []).append(event["data"])
    for name, datas in seen_events.items():
        assert name in EVENTS, name
        for data in datas:
            check("event", name, data)
    assert {"chat", "reaction", "pinned", "invited", "media_mode", "muted"} <= set(seen_events)
    assert {"participant_removed", "room_ended", "disconnected", "attendees"} <= set(seen_events)
    assert listener.join_info["protocol"] == PROTOCOL_VERSION
    check("response", "join", listener.join_info)


@pytest.fixture
async def other_protocol_server() -> AsyncIterator[str]:
    """A WebSocket endpoint on loopback whose join response names another protocol."""

    async def rtc(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            rid = json.loads(message.data)["id"]
            data = {"protocol": PROTOCOL_VERSION + 1, "slots": 3}
            await ws.send_str(json.dumps({"type": "response", "id": rid, "data": data}))
        return ws

    app = web.Application()
    app.add_routes([web.get("/rtc", rtc)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"ws://127.0.0.1:{port}/rtc"
    await runner.cleanup()


async def test_the_client_refuses_a_server_of_another_protocol(other_protocol_server: str) -> None:
    with pytest.raises(IncompatibleServer, match="protocol 2"):
        await PodiumClient.connect(other_protocol_server, token("ada"), media=False)


async def test_a_create_out_of_scope_is_403_unless_the_name_itself_is_bad(
    server: PodiumServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        api = Api(server, http)
        scoped = admin(room="mine")
        body = {"name": "theirs", "max_speakers": 0}
        reply = await api("POST", "/v1/rooms", json_body=body, token=scoped)
        assert (reply.status, reply.error["code"]) == (403, "not_permitted")
        reply = await api("POST", "/v1/rooms", json_body={"name": "a/b"}, token=scoped)
        assert (reply.status, reply.error["field"]) == (400, "name")
        body = {"name": "mine", "max_speakers": 0}
        reply = await api("POST", "/v1/rooms", json_body=body, token=scoped)
        assert (reply.status, reply.error["field"]) == (400, "max_speakers")
