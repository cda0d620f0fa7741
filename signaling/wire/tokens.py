"""HS256 access tokens: what a platform's backend mints and Podium verifies.

Claims follow LiveKit's shape: ``iss`` = API key (selects the secret),
``sub`` = identity, ``exp``/``nbf``/``iat``, plus ``name``, ``metadata`` (the
professional identity shown in the attendee list), ``room`` and ``role``.
Server-API tokens carry ``admin: {"room": NAME | "*"}`` instead, and no
``room`` claim, so that they can never join a room.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from sfu.mixer import is_mix
from signaling.room.roles import Role
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.jwt_time import TimeClaimError, check_times, pyjwt_options

ALGORITHM = "HS256"
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
    return _to_access_token(_verified_claims(token, keys, now, ("exp", "sub", "iss")))


ALL_ROOMS = "*"


@dataclass(frozen=True)
class AdminGrant:
    """What a server-API token allows: one room's administration, or every room's (``*``)."""

    room: str
    api_key: str
    expires_at: float

    def allows(self, room: str) -> bool:
        return self.room in (ALL_ROOMS, room)


def mint_admin_token(
    api_key: str,
    api_secret: str,
    *,
    room: str = ALL_ROOMS,
    ttl: float = 600,
    now: float | None = None,
) -> str:
    """A short-lived token for the server API; it cannot join a room (no ``room`` claim)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": api_key,
        "sub": api_key,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl),
        "admin": {"room": room},
    }
    return jwt.encode(claims, api_secret, algorithm=ALGORITHM)


def verify_admin_token(token: str, keys: Mapping[str, str], now: float | None = None) -> AdminGrant:
    """Like ``verify_token``; a valid token without an admin grant is ``not_permitted``."""
    claims = _verified_claims(token, keys, now, ("exp", "iss"))
    grant = claims.get("admin")
    if not isinstance(grant, dict):
        raise PodiumError(ErrorCode.NOT_PERMITTED, "token carries no admin grant")
    room = grant.get("room")
    if not isinstance(room, str) or not room:
        raise PodiumError(ErrorCode.TOKEN_INVALID, "admin grant has no room ('*' for every room)")
    return AdminGrant(room, str(claims["iss"]), float(claims["exp"]))


def _verified_claims(
    token: str, keys: Mapping[str, str], now: float | None, required: tuple[str, ...]
) -> dict[str, Any]:
    if not isinstance(token, str) or not token:
        raise PodiumError(ErrorCode.TOKEN_INVALID, "access token missing")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise PodiumError(ErrorCode.TOKEN_INVALID, f"malformed access token: {exc}") from exc
    secret = keys.get(str(unverified.get("iss", "")))
    if secret is None:
        raise PodiumError(ErrorCode.TOKEN_INVALID, "unknown API key (iss)")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options=pyjwt_options(list(required)),
        )
    except jwt.PyJWTError as exc:
        raise PodiumError(ErrorCode.TOKEN_INVALID, f"access token rejected: {exc}") from exc
    try:
        check_times(claims, time.time() if now is None else now)
    except TimeClaimError as exc:
        code = ErrorCode.TOKEN_EXPIRED if exc.expired else ErrorCode.TOKEN_INVALID
        raise PodiumError(code, str(exc)) from exc
    return claims


# Cc: controls; Cf: format characters (bidi overrides, zero-width joiners); Cs/Co/Cn:
# surrogates, private use, unassigned; Zl/Zp: line and paragraph separators.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def identity_problem(identity: str) -> str | None:
    """Why ``identity`` cannot name a participant, or None.

    An identity is shown to others and names its sender in every event:
    invisible or text-reordering characters would let one person pose as another.
    """
    if not 0 < len(identity) <= MAX_IDENTITY_LENGTH:
        return f"identity must be 1-{MAX_IDENTITY_LENGTH} characters"
    if any(unicodedata.category(ch) in _UNPRINTABLE for ch in identity):
        return "identity contains control, format or bidi characters"
    if identity != identity.strip():
        return "identity has leading or trailing spaces"
    if is_mix(identity):
        return f"identity {identity!r} is reserved by the protocol"
    return None


def _to_access_token(claims: Mapping[str, Any]) -> AccessToken:
    identity, room = claims.get("sub"), claims.get("room")
    if not isinstance(identity, str):
        raise PodiumError(ErrorCode.TOKEN_INVALID, "token identity (sub) must be a string")
    if (problem := identity_problem(identity)) is not None:
        raise PodiumError(ErrorCode.TOKEN_INVALID, problem)
    if not isinstance(room, str) or not room:
        raise PodiumError(ErrorCode.TOKEN_INVALID, "token has no room")
    try:
        role = Role(claims.get("role", Role.LISTENER))
    except ValueError as exc:
        raise PodiumError(ErrorCode.TOKEN_INVALID, f"unknown role {claims.get('role')!r}") from exc
    metadata = claims.get("metadata") or {}
    name = claims.get("name") or identity
    if not isinstance(metadata, dict) or not isinstance(name, str):
        raise PodiumError(ErrorCode.TOKEN_INVALID, "token name/metadata malformed")
    return AccessToken(identity, room, role, name, metadata, float(claims["exp"]))
