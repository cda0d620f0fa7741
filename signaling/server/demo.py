"""The demo room page and its token endpoint: development mode only.

``podium serve --dev`` (``ServerConfig.serve_demo``) adds:

- ``GET /`` — the demo room page (``static/index.html``);
- ``GET /static/...`` — the page's files and the browser SDK (``static/podium.js``);
- ``GET /dev/token?room=&identity=&role=&name=`` — mints an access token with the
  server's first API key, for anyone who asks. That is what makes the page usable
  without a backend, and why none of this is ever served outside development.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from aiohttp import web

from signaling.room.roles import Role
from signaling.server.config import ServerConfig
from signaling.wire.tokens import MAX_IDENTITY_LENGTH, mint_token

STATIC_DIR = Path(__file__).parents[1] / "static"  # signaling/static: the browser SDK and demo
DEV_TOKEN_TTL = 6 * 3600.0
_NO_CACHE = {"Cache-Control": "no-store"}


def demo_routes(config: ServerConfig) -> list[web.AbstractRouteDef]:
    """Routes for the demo page, its files and the dev token endpoint."""

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers=_NO_CACHE)

    async def dev_token(request: web.Request) -> web.Response:
        query = request.query
        room = query.get("room", "").strip() or "demo"
        identity = query.get("identity", "").strip() or f"guest-{secrets.token_hex(3)}"
        name = query.get("name", "").strip() or identity
        role = query.get("role", Role.LISTENER.value)
        if role not in {r.value for r in Role}:
            raise web.HTTPBadRequest(text=f"unknown role {role!r}")
        if len(identity) > MAX_IDENTITY_LENGTH or len(room) > MAX_IDENTITY_LENGTH:
            raise web.HTTPBadRequest(text="room and identity are limited to 128 characters")
        headline = query.get("headline", "").strip()
        key, secret = next(iter(config.api_keys.items()))
        token = mint_token(
            key,
            secret,
            identity=identity,
            room=room,
            role=role,
            name=name[:128],
            metadata={"headline": headline[:200]} if headline else {},
            ttl=DEV_TOKEN_TTL,
        )
        body = {"token": token, "room": room, "identity": identity, "role": role, "url": "/rtc"}
        return web.json_response(body, headers=_NO_CACHE)

    return [
        web.get("/", index),
        web.get("/dev/token", dev_token),
        web.static("/static", STATIC_DIR, append_version=False),
    ]
