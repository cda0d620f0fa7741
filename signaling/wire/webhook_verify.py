"""Signing and verifying webhook deliveries; import this in the platform's backend.

Podium signs as LiveKit does: the ``Authorization`` header holds an HS256 JWT
made with an API secret (``iss`` = the API key, valid for 5 minutes) whose
``sha256`` claim is ``base64(SHA-256(body))``. A receiver checks the JWT with
its secret, then that the hash matches the exact bytes it received::

    from signaling import verify_webhook

    event = verify_webhook(await request.read(), request.headers, API_SECRET)
    if seen.add_if_new(event["id"]): ...   # delivery is at-least-once: dedupe by id

Every attempt is signed afresh, so a retry hours later is still valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import jwt

from signaling.wire.jwt_time import CLOCK_SKEW, TimeClaimError, check_times, pyjwt_options

ALGORITHM = "HS256"
SIGNATURE_TTL = 300.0
CONTENT_TYPE = "application/webhook+json"


class WebhookError(ValueError):
    """A delivery that did not come from Podium unaltered: reject it (answer 401)."""


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def sign_webhook(body: bytes, api_key: str, api_secret: str, *, now: float | None = None) -> str:
    """The ``Authorization`` header value for one delivery attempt of ``body``."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": api_key,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(SIGNATURE_TTL),
        "sha256": body_hash(body),
    }
    return jwt.encode(claims, api_secret, algorithm=ALGORITHM)


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    api_key: str | None = None,
    now: float | None = None,
    leeway: float = CLOCK_SKEW,
) -> dict[str, Any]:
    """Return the event (parsed body) if the signature holds; raise ``WebhookError`` if not.

    ``body`` must be the raw bytes received (re-serialised JSON will not match).
    ``api_key``, if given, must be the signer's. ``headers`` may be any mapping;
    the header name is matched case-insensitively and a ``Bearer`` prefix is allowed.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    header = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    token = header.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        raise WebhookError("no Authorization header")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options=pyjwt_options(["exp", "iss", "sha256"]),
        )
    except jwt.PyJWTError as exc:
        raise WebhookError(f"bad signature token: {exc}") from exc
    try:
        check_times(claims, time.time() if now is None else now, leeway)
    except TimeClaimError as exc:
        raise WebhookError(f"signature {exc}") from exc
    if api_key is not None and claims["iss"] != api_key:
        raise WebhookError(f"signed by API key {claims['iss']!r}, not {api_key!r}")
    if not isinstance(claims["sha256"], str) or not hmac.compare_digest(
        claims["sha256"], body_hash(raw)
    ):
        raise WebhookError("body does not match its signature (sha256)")
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise WebhookError(f"body is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise WebhookError("body is not a JSON object")
    return event
