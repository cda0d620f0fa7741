"""HS256 access tokens: what a platform's backend mints and Podium verifies.

Claims follow LiveKit's shape: ``iss`` = API key (selects the secret),
``sub`` = identity, ``exp``/``nbf``/``iat``, plus ``name``, ``metadata`` (the
professional identity shown in the attendee list), ``room`` and ``role``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from signaling.errors import PodiumError
from signaling.roles import Role

ALGORITHM = "HS256"
PROFILE_FIELDS = ("headline", "avatar_url", "profile_url")
MAX_IDENTITY_LENGTH = 128


@dataclass(frozen=True)
class AccessToken:
    identity: str
    room: str
    role: Role
    name: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float = 0.0


def mint_token(
    api_key: str,
    api_secret: str,
    *,
    identity: str,
    room: str,
    role: Role | str = Role.LISTENER,
    name: str = "",
    metadata: Mapping[str, Any] | None = None,
    ttl: float = 6 * 3600,
    now: float | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl),
        "name": name,
        "metadata": dict(metadata or {}),
        "room": room,
        "role": str(Role(role)),
    }
    return jwt.encode(claims, api_secret, algorithm=ALGORITHM)


def verify_token(token: str, keys: Mapping[str, str], now: float | None = None) -> AccessToken:
    """Check signature, issuer and time window; raise PodiumError with a precise code."""
    if not isinstance(token, str) or not token:
        raise PodiumError("token_invalid", "access token missing")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise PodiumError("token_invalid", f"malformed access token: {exc}") from exc
    secret = keys.get(str(unverified.get("iss", "")))
    if secret is None:
        raise PodiumError("token_invalid", "unknown API key (iss)")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub", "iss"], "verify_exp": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise PodiumError("token_invalid", f"access token rejected: {exc}") from exc
    current = time.time() if now is None else now
    if claims["exp"] <= current:
        raise PodiumError("token_expired", "access token expired")
    if claims.get("nbf", 0) > current + 5:  # small allowance for clock skew
        raise PodiumError("token_invalid", "access token not valid yet")
    return _to_access_token(claims)


def _to_access_token(claims: Mapping[str, Any]) -> AccessToken:
    identity, room = claims.get("sub"), claims.get("room")
    if not isinstance(identity, str) or not 0 < len(identity) <= MAX_IDENTITY_LENGTH:
        raise PodiumError("token_invalid", "token identity (sub) must be a non-empty string")
    if not isinstance(room, str) or not room:
        raise PodiumError("token_invalid", "token has no room")
    try:
        role = Role(claims.get("role", Role.LISTENER))
    except ValueError as exc:
        raise PodiumError("token_invalid", f"unknown role {claims.get('role')!r}") from exc
    metadata = claims.get("metadata") or {}
    name = claims.get("name") or identity
    if not isinstance(metadata, dict) or not isinstance(name, str):
        raise PodiumError("token_invalid", "token name/metadata malformed")
    return AccessToken(identity, room, role, name, metadata, float(claims["exp"]))
