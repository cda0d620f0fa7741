"""Typed wire messages: request models refuse as documented, and the frames a real server
sends match the schema generated from the response and event types."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from signaling.client.client import IncompatibleServer, PodiumClient
from signaling.server.server import PodiumServer
from signaling.server.session import HANDLER_TYPES
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.messages import (
    EVENTS,
    PROTOCOL_VERSION,
    REQUESTS,
    RESPONSES,
    GetAttendees,
    Join,
    Remove,
    SetMediaMode,
    Target,
    parse_data,
    protocol_schema,
)
from tests.conftest import Connect, token

SCHEMA = protocol_schema()
_REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:podium-ws", Resource.from_contents(SCHEMA, default_specification=DRAFT202012)
)


def check(kind: str, name: str, data: Any) -> None:
    """Validate ``data`` against the generated schema of request/response/event ``name``."""
    pointer = f"/{kind}/{name}"
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"urn:podium-ws#{pointer}"}, registry=_REGISTRY
    )
    validator.validate(data)


def refusal(model: Any, data: dict[str, Any]) -> str:
    with pytest.raises(PodiumError) as info:
        parse_data(model, data)
    assert info.value.code == ErrorCode.INVALID_REQUEST
    return info.value.message


def test_every_request_type_has_a_model_and_a_handler() -> None:
    assert frozenset(REQUESTS) == HANDLER_TYPES
    assert set(RESPONSES) <= set(REQUESTS)


def test_request_fields_are_strictly_typed_and_refusals_name_them() -> None:
    assert refusal(Join, {}) == "field 'token' must be a str"
    assert refusal(Join, {"token": None}) == "field 'token' must be a str"
    assert "'room'" in refusal(Join, {"token": "t", "room": 5})
    assert "'limit'" in refusal(GetAttendees, {"limit": True})  # a bool is no integer
    assert "'limit'" in refusal(GetAttendees, {"limit": 5.0})
    assert "'limit'" in refusal(GetAttendees, {"limit": "5"})
    assert "'ban'" in refusal(Remove, {"participant": "x", "ban": 1})
    assert "king" in refusal(GetAttendees, {"role": "king"})
    assert "'role' must be a str" in refusal(GetAttendees, {"role": 3})
    assert "forward, mix, auto" in refusal(SetMediaMode, {"mode": "loud"})


def test_optional_null_is_absent_and_unknown_fields_are_ignored() -> None:
    assert parse_data(Join, {"token": "t", "room": None, "future": 1}) == Join(token="t")
    assert parse_data(Target, {"participant": None}).participant is None
    assert parse_data(GetAttendees, {"role": "speaker"}).role == "speaker"


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
    assert {"participant_removed", "room_ended", "disconnected"} <= set(seen_events)
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


def test_the_javascript_sdk_speaks_the_same_protocol_version() -> None:
    source = (Path(__file__).resolve().parent.parent / "signaling/static/podium.js").read_text()
    declared = re.search(r"export const PROTOCOL_VERSION = (\d+);", source)
    assert declared is not None
    assert int(declared.group(1)) == PROTOCOL_VERSION
    assert "joinInfo.protocol !== PROTOCOL_VERSION" in source
