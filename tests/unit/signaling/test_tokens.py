from __future__ import annotations

import time

import jwt
import pytest

from signaling.room.roles import Role
from signaling.wire.errors import PodiumError
from signaling.wire.tokens import mint_token, verify_token

KEYS = {"k1": "secret-one-0123456789abcdef012345", "k2": "secret-two-0123456789abcdef012345"}


def test_round_trip_carries_identity_profile_room_and_role() -> None:
    token = mint_token(
        "k1",
        KEYS["k1"],
        identity="ada",
        room="r1",
        role="speaker",
        name="Ada L.",
        metadata={
            "headline": "Engineer",
            "avatar_url": "https://a/x.png",
            "profile_url": "https://p/ada",
        },
    )
    access = verify_token(token, KEYS)
    assert (access.identity, access.room, access.role, access.name) == (
        "ada",
        "r1",
        Role.SPEAKER,
        "Ada L.",
    )
    assert access.metadata["headline"] == "Engineer"


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (
            mint_token("k1", "wrong-secret-0123456789abcdef0123", identity="a", room="r"),
            "token_invalid",
        ),
        (mint_token("nokey", KEYS["k1"], identity="a", room="r"), "token_invalid"),
        (
            mint_token("k1", KEYS["k1"], identity="a", room="r", ttl=10, now=time.time() - 100),
            "token_expired",
        ),
        (
            mint_token("k1", KEYS["k1"], identity="a", room="r", now=time.time() + 3600),
            "token_invalid",
        ),
        ("not.a.jwt", "token_invalid"),
        ("", "token_invalid"),
        (
            jwt.encode(
                {"iss": "k1", "sub": "a", "room": "r", "exp": time.time() + 86400, "role": "king"},
                KEYS["k1"],
                algorithm="HS256",
            ),
            "token_invalid",
        ),
        (
            jwt.encode(
                {"iss": "k1", "sub": "a", "room": "r", "exp": time.time() + 86400},
                KEYS["k1"],
                algorithm="HS512",
            ),
            "token_invalid",
        ),
    ],
    ids=[
        "forged",
        "unknown-key",
        "expired",
        "not-yet-valid",
        "garbage",
        "empty",
        "bad-role",
        "alg",
    ],
)
def test_bad_tokens_are_refused_with_a_code(token: str, code: str) -> None:
    with pytest.raises(PodiumError) as info:
        verify_token(token, KEYS)
    assert info.value.code == code
