"""TURN: credentials handed out per join, and real clients reaching a room only through coturn."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
import time
from typing import Any

import pytest

from signaling.client import PodiumClient
from signaling.config import IceServer
from signaling.turn import ice_servers, rest_credential
from tests.conftest import make_config, token
from tests.netns import MEDIA_ADDRESS, TONE, TURN_SECRET, UDP_PORT, namespaces_missing, run_scenario


def test_rest_credentials_are_coturns_use_auth_secret_scheme() -> None:
    username, password = rest_credential("s3cret", "alice", 1_800_000_000.7)
    assert username == "1800000000:alice"
    expected = hmac.new(b"s3cret", b"1800000000:alice", hashlib.sha1).digest()
    assert base64.b64decode(password) == expected


def test_turn_urls_need_credentials_and_urls_are_checked() -> None:
    with pytest.raises(ValueError, match="need credentials"):
        ice_servers(["turn:turn.example.org:3478"])
    with pytest.raises(ValueError, match="without a turn"):
        ice_servers(["stun:stun.example.org"], secret="s")
    with pytest.raises(ValueError, match="a shared secret or"):
        ice_servers(["turn:t.example.org"], secret="s", username="u", credential="p")
    with pytest.raises(ValueError, match="needs its credential"):
        ice_servers(["turn:t.example.org"], username="u")
    for bad in ("turns:t.example.org?transport=udp", "stun:s?transport=tcp", "http://x", "turn:"):
        with pytest.raises(ValueError, match="bad ICE server URL"):
            ice_servers([bad], secret="s")
    servers = ice_servers(
        ["stun:s.example.org:3478", "turns:t.example.org:5349", "turn:[2001:db8::1]:3478"],
        username="u",
        credential="p",
    )
    assert [s.urls for s in servers] == [
        ("stun:s.example.org:3478",),
        ("turns:t.example.org:5349", "turn:[2001:db8::1]:3478"),
    ]


def test_command_line_refuses_turn_without_credentials_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "signaling.cli", "serve", "--dev", "--ice-server", "turn:t:3478"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("podium serve: turn: URLs")


async def test_each_join_gets_its_own_time_limited_credential() -> None:
    from signaling.server import PodiumServer

    turn = IceServer(("turn:127.0.0.1:3478",), secret="s", credential_ttl=3600)
    server = PodiumServer(make_config(ice_servers=(turn,)))
    await server.start()
    try:
        infos: list[list[dict[str, Any]]] = []
        for identity in ("alice", "bob"):
            client = await PodiumClient.connect(server.url, token(identity), media=False)
            infos.append(client.join_info["ice_servers"])
            await client.close()
    finally:
        await server.stop()
    now = time.time()
    for identity, (entry,) in zip(("alice", "bob"), infos, strict=True):
        expiry, _, who = entry["username"].partition(":")
        assert who == identity and now + 3590 < int(expiry) <= now + 3600
        assert entry["credential"] == rest_credential("s", identity, int(expiry))[1]
        assert entry["urls"] == ["turn:127.0.0.1:3478"]


@pytest.mark.slow
def test_clients_that_reach_only_coturn_hear_the_room_over_udp_tcp_and_tls() -> None:
    """A real coturn; the clients have no route to Podium's media address (tests/netns.py).

    Without TURN they cannot connect at all; with each TURN transport (UDP, TCP, TLS with
    a test certificate, and static credentials) both join, the listener's selected pair
    is its relayed candidate to Podium's media port, and it hears the speaker's tone.
    """
    why = namespaces_missing("turnserver")
    if why:
        pytest.skip(why + " (apt-get install coturn)" if "turnserver" in why else why)
    results = run_scenario("turn", timeout=180)
    assert results["direct"]["connected"] is False
    for case in ("udp", "tcp", "tls", "static"):
        result = results[case]
        assert result["connected"], case
        assert result["local"] == "relay", case
        assert result["remote"] == [MEDIA_ADDRESS, UDP_PORT], case
        assert abs(result["frequency"] - TONE) < 5, case
    assert results["udp"]["ice_servers"][0]["username"].endswith(":bob")
    assert results["static"]["ice_servers"][0]["username"] == "podium"
    assert TURN_SECRET not in str(results)
