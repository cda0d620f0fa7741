"""Server API and webhook test helpers: a client that checks every response against the
OpenAPI document, and a real webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import jsonschema
from aiohttp import web
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from signaling.server.server import PodiumServer
from signaling.wire.openapi import spec
from signaling.wire.tokens import mint_admin_token
from signaling.wire.webhook_verify import WebhookError, verify_webhook
from tests.conftest import API_KEY, API_SECRET

SPEC = spec()
_REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:podium", Resource.from_contents(SPEC, default_specification=DRAFT202012)
)


def admin(room: str = "*", **kw: Any) -> str:
    return mint_admin_token(API_KEY, API_SECRET, room=room, **kw)


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def validate(instance: Any, pointer: str) -> None:
    """Validate ``instance`` against the schema at ``pointer`` in the OpenAPI document."""
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"urn:podium#{pointer}"}, registry=_REGISTRY
    )
    validator.validate(instance)


def validate_response(method: str, template: str, status: int, body: Any) -> None:
    responses = SPEC["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered undocumented {status}"
    response = responses[str(status)]
    pointer = _pointer("paths", template, method.lower(), "responses", str(status))
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        response = SPEC["components"]["responses"][name]
        pointer = _pointer("components", "responses", name)
    if "content" not in response:
        assert body is None, f"{method} {template} {status} should have no body"
        return
    validate(body, pointer + _pointer("content", "application/json", "schema"))


def validate_webhook_event(event: dict[str, Any]) -> None:
    validate(event, _pointer("components", "schemas", f"Webhook_{event['event']}"))


@dataclass
class Reply:
    status: int
    body: Any

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.body, dict) and "error" in self.body, self.body
        error: dict[str, Any] = self.body["error"]
        return error


ADMIN = "<all-rooms admin token>"


class Api:
    """Calls by template, e.g. ``await api("GET", "/v1/rooms/{room}", room="r")``."""

    def __init__(self, server: PodiumServer, http: aiohttp.ClientSession) -> None:
        self.base = f"http://127.0.0.1:{server.port}"
        self.http = http
        self.token = admin()

    async def __call__(
        self,
        method: str,
        template: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        token: str | None = ADMIN,
        **path: str,
    ) -> Reply:
        """``token``: the all-rooms admin token unless given; None sends none."""
        url = self.base + template.format(**{k: quote(v, safe="") for k, v in path.items()})
        headers = {}
        token = self.token if token is ADMIN else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, url, data=data, params=params, headers=headers
        ) as response:
            raw = await response.read()
            body = json.loads(raw) if raw else None
            if raw:
                assert response.content_type == "application/json"
            validate_response(method, template, response.status, body)
            return Reply(response.status, body)


@dataclass
class Received:
    event: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Receiver:
    """A webhook endpoint on loopback that verifies every delivery and can be taken down."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    rejected: int = 0
    fault: Callable[[dict[str, Any]], int | None] | None = None
    """Per delivery: a status to answer instead of 200 (after recording it), or None."""
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.post("/hooks", self._handle)])
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = verify_webhook(body, request.headers, API_SECRET, api_key=API_KEY)
        except WebhookError:
            self.rejected += 1
            return web.Response(status=401)
        assert request.content_type == "application/webhook+json"
        validate_webhook_event(event)
        self.received.append(Received(event, dict(request.headers)))
        status = self.fault(event) if self.fault is not None else None
        return web.Response(status=status or 200)

    def events(self, room: str | None = None) -> list[dict[str, Any]]:
        """Deduplicated by id, in arrival order of first copies."""
        seen: set[str] = set()
        out = []
        for item in self.received:
            event = item.event
            if event["id"] in seen or (room is not None and event["room"]["name"] != room):
                continue
            seen.add(event["id"])
            out.append(event)
        return out

    def names(self, room: str) -> list[str]:
        return [e["event"] for e in self.events(room)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(receiver: Receiver) -> Any:
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
