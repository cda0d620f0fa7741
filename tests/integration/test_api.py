"""The server API over real HTTP, its effect on live rooms (real clients, real audio),
and every response checked against the served OpenAPI document."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from openapi_spec_validator import validate as validate_spec

from signaling.client.client import PodiumClient
from signaling.server.server import PodiumServer
from signaling.wire.errors import PodiumError
from signaling.wire.tokens import mint_admin_token
from tests.api_helpers import SPEC, Api, admin
from tests.conftest import API_KEY, API_SECRET, LOOPBACK, Connect, eventually, token
from tests.integration.test_stage_e2e import heard, slot_of
from tests.media import ToneTrack
from tests.rooms import media_of

ROOM = "/v1/rooms/{room}"
PARTICIPANTS = ROOM + "/participants"
PARTICIPANT = PARTICIPANTS + "/{identity}"


@pytest.fixture
async def api(server: PodiumServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(server, http)


async def test_openapi_document_is_served_and_valid(server: PodiumServer, api: Api) -> None:
    reply = await api("GET", "/openapi.json", token=None)
    assert reply.status == 200
    assert reply.body == SPEC
    validate_spec(reply.body)
    # Every API route the server has is described, and nothing more.
    described = {
        (m.upper(), p) for p, ops in SPEC["paths"].items() for m in ops if m != "parameters"
    }
    routes = {
        (route.method, route.resource.canonical)
        for route in server.app.router.routes()
        if route.resource is not None
        and (
            route.resource.canonical.startswith("/v1/")
            or route.resource.canonical == "/openapi.json"
        )
    }
    assert routes == described


async def test_credentials_missing_forged_expired_or_out_of_scope(
    api: Api, connect: Connect
) -> None:
    await connect("host", "host", media=False)  # room1 exists
    forged = mint_admin_token(API_KEY, "not-the-secret-0123456789abcdef0123")
    expired = admin(now=time.time() - 3600, ttl=60)
    unknown_key = mint_admin_token("nokey", API_SECRET)
    garbage = "not.a.jwt"
    for credential in (None, forged, expired, unknown_key, garbage, ""):
        reply = await api("GET", ROOM, room="room1", token=credential)
        assert reply.status == 401, (credential, reply)
        assert reply.error["code"] in ("token_invalid", "token_expired")
    assert (await api("GET", ROOM, room="room1", token=expired)).error["code"] == "token_expired"
    # A join token is genuine but grants no administration.
    participant = token("host", "host")
    assert (await api("GET", ROOM, room="room1", token=participant)).status == 403
    # A room-scoped admin token: its room only.
    scoped = admin(room="room2")
    assert (await api("GET", ROOM, room="room1", token=scoped)).status == 403
    assert (await api("DELETE", ROOM, room="room1", token=scoped)).status == 403
    assert (await api("GET", PARTICIPANTS, room="room1", token=scoped)).status == 403
    reply = await api("DELETE", PARTICIPANT, room="room1", identity="host", token=scoped)
    assert reply.status == 403
    reply = await api("POST", "/v1/rooms", json_body={"name": "room1"}, token=scoped)
    assert (reply.status, reply.error["code"]) == (403, "not_permitted")
    # ...where it works, and sees no other room.
    assert (await api("POST", "/v1/rooms", json_body={"name": "room2"}, token=scoped)).status == 201
    assert (await api("GET", ROOM, room="room2", token=scoped)).status == 200
    listed = await api("GET", "/v1/rooms", token=scoped)
    assert [r["name"] for r in listed.body["rooms"]] == ["room2"]
    listed = await api("GET", "/v1/rooms")
    assert [r["name"] for r in listed.body["rooms"]] == ["room1", "room2"]
    # Scope is checked before existence: a scoped token learns nothing about other rooms.
    assert (await api("GET", ROOM, room="nonexistent", token=scoped)).status == 403


@pytest.mark.parametrize(
    ("method", "template", "path", "body", "field"),
    [
        ("POST", "/v1/rooms", {}, b"{not json", "body"),
        ("POST", "/v1/rooms", {}, [1, 2], "body"),
        ("POST", "/v1/rooms", {}, {}, "name"),
        ("POST", "/v1/rooms", {}, {"name": ""}, "name"),
        ("POST", "/v1/rooms", {}, {"name": "a/b"}, "name"),
        ("POST", "/v1/rooms", {}, {"name": "x" * 129}, "name"),
        ("POST", "/v1/rooms", {}, {"name": 7}, "name"),
        ("POST", "/v1/rooms", {}, {"name": "r", "max_speakers": 0}, "max_speakers"),
        ("POST", "/v1/rooms", {}, {"name": "r", "max_speakers": 2.5}, "max_speakers"),
        ("POST", "/v1/rooms", {}, {"name": "r", "max_participants": True}, "max_participants"),
        ("POST", "/v1/rooms", {}, {"name": "r", "empty_timeout": -1}, "empty_timeout"),
        ("POST", "/v1/rooms", {}, {"name": "r", "empty_timeout": None}, "empty_timeout"),
        ("POST", "/v1/rooms", {}, {"name": "r", "media_mode": "loud"}, "media_mode"),
        ("POST", "/v1/rooms", {}, {"name": "r", "metadata": "x"}, "metadata"),
        ("POST", "/v1/rooms", {}, {"name": "r", "metadata": {"a": "x" * 20000}}, "metadata"),
        ("POST", "/v1/rooms", {}, {"name": "r", "colour": "red"}, "colour"),
        ("POST", "/v1/rooms", {}, b'{"name": "r", "empty_timeout": NaN}', "body"),
        ("PATCH", PARTICIPANT, {"identity": "host"}, {"role": "king"}, "role"),
        ("PATCH", PARTICIPANT, {"identity": "host"}, {"name": ""}, "name"),
        ("PATCH", PARTICIPANT, {"identity": "host"}, {"metadata": []}, "metadata"),
        ("POST", ROOM + "/messages", {}, {}, "text"),
        ("POST", ROOM + "/messages", {}, {"text": "hi", "to": 5}, "to"),
        ("POST", ROOM + "/messages", {}, {"text": "x" * 2001}, "text"),
    ],
)
async def test_malformed_bodies_are_400_naming_the_field(
    api: Api,
    connect: Connect,
    method: str,
    template: str,
    path: dict[str, str],
    body: Any,
    field: str,
) -> None:
    await connect("host", "host", media=False)
    if isinstance(body, bytes):
        reply = await api(method, template, data=body, room="room1", **path)  # type: ignore[arg-type]
    else:
        reply = await api(method, template, json_body=body, room="room1", **path)  # type: ignore[arg-type]
    assert reply.status == 400, reply
    assert reply.error["code"] == "invalid_request"
    assert reply.error["field"] == field
    assert field in reply.error["message"]


@pytest.mark.parametrize(
    ("template", "params", "field"),
    [
        (PARTICIPANTS, {"limit": "0"}, "limit"),
        (PARTICIPANTS, {"limit": "many"}, "limit"),
        (PARTICIPANTS, {"role": "king"}, "role"),
        (PARTICIPANTS, {"cursor": "!!"}, "cursor"),
        ("/v1/rooms", {"limit": "101"}, "limit"),
    ],
)
async def test_malformed_queries_are_400_naming_the_field(
    api: Api, connect: Connect, template: str, params: dict[str, str], field: str
) -> None:
    await connect("host", "host", media=False)
    reply = await api("GET", template, params=params, room="room1")
    assert (reply.status, reply.error["field"]) == (400, field)
    reply = await api("DELETE", PARTICIPANT, params={"ban": "maybe"}, room="room1", identity="host")
    assert (reply.status, reply.error["field"]) == (400, "ban")


async def test_unknown_room_or_participant_is_404(api: Api, connect: Connect) -> None:
    await connect("host", "host", media=False)
    for method, template in [
        ("GET", ROOM),
        ("DELETE", ROOM),
        ("GET", PARTICIPANTS),
        ("GET", ROOM + "/attendance"),
    ]:
        reply = await api(method, template, room="nowhere")
        assert (reply.status, reply.error["code"]) == (404, "room_not_found"), template
    for method, template in [
        ("GET", PARTICIPANT),
        ("PATCH", PARTICIPANT),
        ("DELETE", PARTICIPANT),
        ("POST", PARTICIPANT + "/mute"),
    ]:
        body: dict[str, Any] | None = {} if method == "PATCH" else None
        reply = await api(method, template, json_body=body, room="room1", identity="ghost")
        assert (reply.status, reply.error["code"]) == (404, "participant_not_found"), template
    reply = await api("POST", ROOM + "/messages", json_body={"text": "hi"}, room="nowhere")
    assert reply.status == 404
    reply = await api(
        "POST", ROOM + "/messages", json_body={"text": "hi", "to": "ghost"}, room="room1"
    )
    assert (reply.status, reply.error["code"]) == (404, "participant_not_found")
    # Paths and methods outside the API still answer in its error shape.
    async with api.http.get(api.base + "/v1/nothing-here", headers={}) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    async with api.http.put(api.base + "/v1/rooms") as response:
        assert response.status == 405
        assert "POST" in response.headers["Allow"]
        assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_create_get_list_and_end_rooms(
    server: PodiumServer, api: Api, connect: Connect
) -> None:
    settings = {"max_participants": 2, "max_speakers": 1, "empty_timeout": 60}
    body = {"name": "town-hall", **settings, "media_mode": "forward", "metadata": {"k": "v"}}
    created = await api("POST", "/v1/rooms", json_body=body)
    assert created.status == 201
    assert created.body["settings"] == {**settings, "media_mode": "forward"}
    assert created.body["metadata"] == {"k": "v"}
    assert created.body["num_participants"] == 0
    again = await api("POST", "/v1/rooms", json_body=body)  # a retried create
    assert (again.status, again.body["sid"]) == (200, created.body["sid"])
    other = await api("POST", "/v1/rooms", json_body={**body, "max_speakers": 2})
    assert (other.status, other.error["code"]) == (409, "room_exists")

    # Its settings hold for joins: one seat on stage, two in the room.
    host = await connect("host", "host", room="town-hall", media=False)
    fan = await connect("fan", "listener", room="town-hall", media=False)
    with pytest.raises(PodiumError) as full:
        await connect("late", "listener", room="town-hall", media=False)
    assert full.value.code == "room_full"
    reply = await api(
        "PATCH", PARTICIPANT, json_body={"role": "speaker"}, room="town-hall", identity="fan"
    )
    assert (reply.status, reply.error["code"]) == (409, "stage_full")
    assert (await api("GET", PARTICIPANT, room="town-hall", identity="fan")).body["role"] == (
        "listener"
    )
    # A second session of "fan" that wants the full stage is refused, and the first
    # session keeps its place (the check comes before the old session is replaced).
    with pytest.raises(PodiumError) as second:
        await connect("fan", "speaker", room="town-hall", media=False)
    assert second.value.code == "stage_full"
    assert (await fan.request("ping"))["time"] > 0
    got = await api("GET", ROOM, room="town-hall")
    assert got.body["num_participants"] == 2
    assert got.body["counts"] == {"host": 1, "moderator": 0, "speaker": 0, "listener": 1}

    # Paging through rooms by name.
    for name in ("b-room", "a-room"):
        assert (await api("POST", "/v1/rooms", json_body={"name": name})).status == 201
    first = await api("GET", "/v1/rooms", params={"limit": "2"})
    assert [r["name"] for r in first.body["rooms"]] == ["a-room", "b-room"]
    rest = await api("GET", "/v1/rooms", params={"limit": "2", "cursor": first.body["next_cursor"]})
    assert [r["name"] for r in rest.body["rooms"]] == ["town-hall"]
    assert rest.body["next_cursor"] is None

    # End: everyone is told why and disconnected; the room is gone.
    assert (await api("DELETE", ROOM, room="town-hall")).status == 204
    for client in (host, fan):
        assert (await client.next_event("disconnected")).data == {"reason": "room_ended"}
    await eventually(lambda: "town-hall" not in server.rooms)
    assert (await api("GET", ROOM, room="town-hall")).status == 404
    # An empty room ends at once.
    assert (await api("DELETE", ROOM, room="a-room")).status == 204
    assert "a-room" not in server.rooms


async def test_created_room_waits_its_empty_timeout_for_a_first_join(
    server: PodiumServer, api: Api, connect: Connect
) -> None:
    # The server's own empty_timeout is 0 in tests; the room's own one applies.
    await api("POST", "/v1/rooms", json_body={"name": "soon", "empty_timeout": 1})
    await asyncio.sleep(0.6)
    assert (await api("GET", ROOM, room="soon")).status == 200
    client = await connect("early", "listener", room="soon", media=False)
    await asyncio.sleep(0.6)  # past the first deadline: a join cancelled it
    assert "soon" in server.rooms
    await client.leave()
    await asyncio.sleep(0.3)
    assert "soon" in server.rooms  # empty again: another full timeout
    await eventually(lambda: "soon" not in server.rooms, timeout=3)


async def test_promote_mute_demote_via_api_change_what_is_heard(
    server: PodiumServer, api: Api, connect: Connect
) -> None:
    host = await connect("host", "host")
    guest = await connect("guest", "listener")
    listener = await connect("listener")

    reply = await api(
        "PATCH", PARTICIPANT, json_body={"role": "speaker"}, room="room1", identity="guest"
    )
    assert reply.status == 200
    assert (reply.body["role"], reply.body["muted"]) == ("speaker", True)  # arrives self-muted
    changed = await listener.next_event("role_changed")
    assert changed.data == {"participant": "guest", "old": "listener", "new": "speaker", "by": ""}
    await guest.publish(ToneTrack(660))
    await guest.request("unmute")  # only the participant opens their microphone
    await eventually(lambda: slot_of(listener, "guest") is not None)
    assert await heard(listener, "guest", 660)

    reply = await api("POST", PARTICIPANT + "/mute", room="room1", identity="guest")
    assert (reply.status, reply.body["muted"]) == (200, True)
    muted = await guest.next_event("muted", where=lambda d: d["muted"])
    assert muted.data == {"participant": "guest", "by": "", "muted": True}
    assert not await heard(listener, "guest", 660)
    again = await api("POST", PARTICIPANT + "/mute", room="room1", identity="guest")
    assert again.status == 200  # a retry changes nothing
    await guest.request("unmute")
    await eventually(lambda: slot_of(listener, "guest") is not None)
    assert await heard(listener, "guest", 660)

    reply = await api(
        "PATCH", PARTICIPANT, json_body={"role": "listener"}, room="room1", identity="guest"
    )
    assert reply.body["role"] == "listener"
    assert not await heard(listener, "guest", 660)
    reply = await api("POST", PARTICIPANT + "/mute", room="room1", identity="guest")
    assert (reply.status, reply.error["code"]) == (409, "not_on_stage")
    assert host.pc is not None


async def test_remove_via_api_disconnects_and_bans(
    server: PodiumServer, api: Api, connect: Connect
) -> None:
    host = await connect("host", "host", media=False)
    troll = await connect("troll", "speaker")
    reply = await api(
        "DELETE",
        PARTICIPANT,
        params={"ban": "true", "reason": "spam"},
        room="room1",
        identity="troll",
    )
    assert (reply.status, reply.body) == (204, None)
    assert (await troll.next_event("disconnected")).data == {"reason": "banned"}
    removed = await host.next_event("participant_removed")
    assert removed.data == {"participant": "troll", "by": "", "banned": True, "reason": "spam"}
    await eventually(lambda: "troll" not in server.rooms["room1"].participants)
    await eventually(lambda: not media_of(server.rooms["room1"]).peers.get("troll"))
    assert (await api("GET", PARTICIPANT, room="room1", identity="troll")).status == 404
    with pytest.raises(PodiumError) as banned:
        await PodiumClient.connect(server.url, token("troll"), host_addresses=LOOPBACK)
    assert banned.value.code == "banned"
    # Without a ban, the same identity may come back.
    await connect("pest", "listener", media=False)
    reply = await api("DELETE", PARTICIPANT, room="room1", identity="pest")
    assert reply.status == 204
    await eventually(lambda: "pest" not in server.rooms["room1"].participants)
    await connect("pest", "listener", media=False)


async def test_participants_are_paged_in_join_order_and_filtered_by_role(
    api: Api, connect: Connect
) -> None:
    roles = ["host", "listener", "speaker", "listener", "listener", "moderator", "listener"]
    for i, role in enumerate(roles):
        await connect(f"p{i}", role, media=False)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = await api("GET", PARTICIPANTS, params=params, room="room1")
        assert page.body["total"] == len(roles)
        seen += [p["identity"] for p in page.body["participants"]]
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p{i}" for i in range(len(roles))]
    listeners = await api("GET", PARTICIPANTS, params={"role": "listener"}, room="room1")
    assert [p["identity"] for p in listeners.body["participants"]] == ["p1", "p3", "p4", "p6"]
    assert listeners.body["total"] == 4
    one = await api("GET", PARTICIPANT, room="room1", identity="p2")
    assert one.body["role"] == "speaker" and one.body["muted"] is False


async def test_update_name_and_metadata_reaches_everyone(api: Api, connect: Connect) -> None:
    await connect("host", "host", media=False)
    watcher = await connect("watcher", media=False)
    reply = await api(
        "PATCH",
        PARTICIPANT,
        json_body={"name": "Ada Lovelace", "metadata": {"headline": "Analyst", "tier": 3}},
        room="room1",
        identity="host",
    )
    assert reply.status == 200
    assert (reply.body["name"], reply.body["headline"]) == ("Ada Lovelace", "Analyst")
    assert reply.body["metadata"] == {"headline": "Analyst", "tier": 3}
    delta = await watcher.next_event("attendees", where=lambda d: bool(d["updated"]))
    assert delta.data["updated"][0]["name"] == "Ada Lovelace"
    assert delta.data["updated"][0]["headline"] == "Analyst"
    stage = await watcher.request("get_stage")
    assert stage["speakers"][0]["name"] == "Ada Lovelace"
    attendance = await api("GET", ROOM + "/attendance", room="room1")
    names = {r["identity"]: r["name"] for r in attendance.body["records"]}
    assert names["host"] == "Ada Lovelace"
    # An empty PATCH changes nothing and says so.
    same = await api("PATCH", PARTICIPANT, json_body={}, room="room1", identity="host")
    assert same.body == reply.body


async def test_messages_to_the_room_or_to_one(api: Api, connect: Connect) -> None:
    a = await connect("a", "host", media=False)
    b = await connect("b", media=False)
    reply = await api(
        "POST",
        ROOM + "/messages",
        json_body={"text": "Starting soon", "data": {"x": 1}},
        room="room1",
    )
    assert reply.body == {"recipients": 2}
    for client in (a, b):
        message = await client.next_event("server_message")
        assert message.data["text"] == "Starting soon" and message.data["data"] == {"x": 1}
        assert message.data["private"] is False
    reply = await api(
        "POST", ROOM + "/messages", json_body={"text": "psst", "to": "b"}, room="room1"
    )
    assert reply.body == {"recipients": 1}
    private = await b.next_event("server_message")
    assert (private.data["text"], private.data["private"]) == ("psst", True)
    with pytest.raises(TimeoutError):
        await a.next_event("server_message", timeout=0.3)


async def test_attendance_records_visits_and_roles(api: Api, connect: Connect) -> None:
    await connect("host", "host", media=False)
    fan = await connect("fan", media=False)
    await api("PATCH", PARTICIPANT, json_body={"role": "speaker"}, room="room1", identity="fan")
    await fan.leave()
    reply = await api("GET", ROOM + "/attendance", room="room1")
    records = {r["identity"]: r for r in reply.body["records"]}
    (visit,) = records["fan"]["visits"]
    assert [r["role"] for r in visit["roles"]] == ["listener", "speaker"]
    assert visit["left_at"] is not None
    assert records["host"]["visits"][0]["left_at"] is None


async def test_bodies_over_the_limit_are_413(api: Api) -> None:
    reply = await api("POST", "/v1/rooms", data=b" " * (1024 * 1024 + 10))
    assert (reply.status, reply.error["code"]) == (413, "request_too_large")


async def test_admin_token_cannot_join_and_join_token_cannot_administer(
    server: PodiumServer,
) -> None:
    with pytest.raises(PodiumError) as refused:
        await PodiumClient.connect(server.url, admin("room1"), media=False)
    assert refused.value.code == "token_invalid"
    claims = jwt.decode(admin("room1"), options={"verify_signature": False})
    assert claims["admin"] == {"room": "room1"} and "room" not in claims


def test_cli_mints_admin_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    from signaling.server.cli import build_parser, main
    from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
    from signaling.wire.tokens import verify_admin_token

    keys = {DEV_API_KEY: DEV_API_SECRET}
    main(["token", "--dev", "--admin", "--room", "town-hall"])
    assert verify_admin_token(capsys.readouterr().out.strip(), keys).room == "town-hall"
    main(["token", "--dev", "--admin"])
    assert verify_admin_token(capsys.readouterr().out.strip(), keys).room == "*"
    args = build_parser().parse_args(
        ["serve", "--dev", "--webhook-url", "http://a/h", "--webhook-url", "http://b/h"]
    )
    assert args.webhook_url == ["http://a/h", "http://b/h"]
