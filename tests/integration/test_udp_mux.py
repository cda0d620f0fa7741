"""One UDP port for every peer connection, and the batched SRTP egress behind it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator

import aioice.ice
import pytest
from aioice import stun
from pylibsrtp import Policy, Session

from sfu.config import MediaConfig
from sfu.rtc.sendmmsg import SendBatch, available
from sfu.rtc.udp_mux import ice_string
from signaling.client.client import PodiumClient
from signaling.server.cli import build_parser
from signaling.server.server import PodiumServer
from tests.conftest import LOOPBACK, Connect, eventually, make_config, token
from tests.media import ToneTrack, dominant_frequency, record
from tests.netns import NAT_ADDRESS, TONE, UDP_PORT, namespaces_missing, run_scenario
from tests.rooms import media_of

pytestmark = pytest.mark.skipif(not available(), reason="sendmmsg(2) is Linux-only")


def answer_ports(client: PodiumClient) -> set[int]:
    assert client.pc is not None and client.pc.remoteDescription is not None
    sdp = client.pc.remoteDescription.sdp
    return {int(port) for port in re.findall(r"a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ host", sdp)}


async def test_every_peer_connection_shares_one_port_and_audio_flows(
    server: PodiumServer, connect: Connect
) -> None:
    assert server.udp is not None
    port = server.udp.port
    speaker = await connect("alice", "speaker", publish=ToneTrack(440))
    listeners = [await connect(f"l{i}") for i in range(3)]
    for client in (speaker, *listeners):
        assert answer_ports(client) == {port}
    for listener in listeners:
        await eventually(lambda listener=listener: listener.slots[0].participant == "alice")  # type: ignore[misc]
        track = listener.slots[0].track
        assert track is not None
        samples = await record(track, 1.0)
        assert abs(dominant_frequency(samples[12000:]) - 440) < 5

    # A fan-out to three subscribers on the shared socket goes out in batches.
    dump = server.udp.dump()
    assert dump["connections"] == 4 and dump["remote_addresses"] >= 4
    assert dump["batched_datagrams"] > 3 * 40
    assert dump["sendmmsg_calls"] < dump["batched_datagrams"] / 2

    for client in (speaker, *listeners):
        await client.leave()
    await eventually(lambda: server.udp is not None and server.udp.dump()["connections"] == 0)
    assert server.udp.dump()["remote_addresses"] == 0


async def test_strangers_on_the_port_are_dropped_and_the_room_goes_on(
    server: PodiumServer, connect: Connect
) -> None:
    assert server.udp is not None
    speaker = await connect("alice", "speaker", publish=ToneTrack(660))
    listener = await connect("bob")
    await eventually(lambda: listener.slots[0].participant == "alice")

    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    target = ("127.0.0.1", server.udp.port)
    check = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    check.attributes["USERNAME"] = "nobody-here:x"
    check.add_message_integrity(b"wrong password")
    garbage = [
        b"",
        os.urandom(200),
        bytes([0x80, 111]) + os.urandom(100),  # RTP-looking, from an unknown address
        bytes(check),  # a check naming no registered ufrag
        bytes(check)[:10],
    ]
    for datagram in garbage:
        stranger.sendto(datagram, target)
    await eventually(lambda: server.udp is not None and server.udp.stats["unknown_datagrams"] >= 4)

    track = listener.slots[0].track
    assert track is not None
    samples = await record(track, 1.0)
    assert abs(dominant_frequency(samples[12000:]) - 660) < 5
    assert server.udp.dump()["connections"] == 2
    stranger.close()
    await speaker.leave()


async def test_consent_expires_when_a_client_stops_checking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server sends no consent checks; the client's own keep the pair alive."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.25)  # the clients' check pace
    media = MediaConfig(announce_addresses=LOOPBACK, ice_consent_timeout=1.5)
    # No resume window: the expired pair releases the seat at once (tests/test_resume.py
    # covers the seat held for a new offer).
    server = PodiumServer(make_config(media=media, resume_window=0))
    await server.start()
    clients = []
    try:
        for identity in ("steady", "silent"):
            client = await PodiumClient.connect(
                server.url, token(identity), host_addresses=LOOPBACK
            )
            clients.append(client)
            await client.wait_connected()
        silent = clients[1]
        assert silent.pc is not None
        ice = silent.pc.getTransceivers()[0].sender.transport.transport._connection
        ice._query_consent_task.cancel()  # type: ignore[union-attr]  # the client stops re-checking

        room = server.rooms["room1"]
        await eventually(lambda: "silent" not in room.participants, timeout=6)
        assert server.udp is not None and server.udp.stats["consent_expired"] == 1
        await asyncio.sleep(1.0)  # well past the timeout: the checking client stays
        assert "steady" in room.participants
        assert media_of(room).peers["steady"].connection_state == "connected"
    finally:
        for client in clients:
            await client.close()
        await server.stop()


@pytest.fixture
async def per_connection_server() -> AsyncIterator[PodiumServer]:
    srv = PodiumServer(make_config(media=MediaConfig(announce_addresses=LOOPBACK, udp_port=None)))
    await srv.start()
    yield srv
    await srv.stop()


async def test_per_connection_ports_still_work(per_connection_server: PodiumServer) -> None:
    server = per_connection_server
    assert server.udp is None
    clients = [
        await PodiumClient.connect(
            server.url, token("alice", "speaker"), publish=ToneTrack(880), host_addresses=LOOPBACK
        ),
        await PodiumClient.connect(server.url, token("bob"), host_addresses=LOOPBACK),
    ]
    try:
        for client in clients:
            await client.wait_connected()
        speaker, listener = clients
        assert answer_ports(speaker) != answer_ports(listener)
        await eventually(lambda: listener.slots[0].participant == "alice")
        track = listener.slots[0].track
        assert track is not None
        samples = await record(track, 1.0)
        assert abs(dominant_frequency(samples[12000:]) - 880) < 5
    finally:
        for client in clients:
            await client.close()


async def test_fixed_port_from_the_command_line() -> None:
    assert build_parser().parse_args(["serve", "--dev"]).udp_port == 7882
    assert build_parser().parse_args(["serve", "--dev", "--udp-port", "none"]).udp_port is None
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = PodiumServer(
        make_config(media=MediaConfig(announce_addresses=LOOPBACK, udp_port=port))
    )
    await server.start()
    try:
        assert server.udp is not None and server.udp.port == port
        taken = PodiumServer(
            make_config(media=MediaConfig(announce_addresses=LOOPBACK, udp_port=port))
        )
        with pytest.raises(OSError):
            await taken.start()
        await taken.stop()
    finally:
        await server.stop()


# -- SendBatch ---------------------------------------------------------------
def srtp_pair() -> tuple[Session, Session]:
    key = os.urandom(30)
    tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    rx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND))
    return tx, rx


def rtp(seq: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 0x1234) + payload


def loopback_sockets(receivers: int) -> tuple[socket.socket, list[socket.socket]]:
    """A sending UDP socket and ``receivers`` receiving ones (2 s timeout), on loopback."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    others = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(receivers)]
    for r in others:
        r.bind(("127.0.0.1", 0))
        r.settimeout(2)
    return sender, others


async def test_batch_protects_in_place_and_sends_once_per_loop_pass() -> None:
    sender, receivers = loopback_sockets(3)
    fallback: list[bytes] = []
    batch = SendBatch(sender.fileno(), lambda data, addr: fallback.append(data), capacity=4)
    sessions = [srtp_pair() for _ in receivers]
    writers = [
        batch.srtp_writer(tx, r.getsockname())
        for (tx, _), r in zip(sessions, receivers, strict=True)
    ]
    # A destination the kernel refuses (port 0): that datagram is lost, the others go.
    broken = batch.srtp_writer(srtp_pair()[0], ("127.0.0.1", 0))

    for seq in range(3):  # 3 rounds x 4 datagrams, capacity 4: a full batch flushes inline
        for i, write in enumerate(writers):
            write(rtp(seq, bytes([i]) * (50 + seq)))
        broken(rtp(seq, b"x" * 10))
        await asyncio.sleep(0)
    await asyncio.sleep(0)

    for i, ((_, rx), r) in enumerate(zip(sessions, receivers, strict=True)):
        for seq in range(3):
            packet = rx.unprotect(r.recv(2000))
            assert packet == rtp(seq, bytes([i]) * (50 + seq))
    assert batch.datagrams == 12 and batch.errors == 3
    assert batch.syscalls <= 3 + 3  # one call per pass, plus one more after each refusal
    assert fallback == []
    with pytest.raises(ValueError):
        writers[0](b"\x80" * 1400)
    batch.close()  # the socket goes: nothing is written to its (maybe reused) fd again
    with pytest.raises(OSError):
        writers[0](rtp(9, b"late"))
    for s in (sender, *receivers):
        s.close()


async def test_batch_slots_changing_hands_send_each_datagram_to_its_own_listener() -> None:
    """A slot's address is rewritten only when another target takes the slot: audiences
    in other orders, and one that left, still get exactly their own datagrams."""
    sender, receivers = loopback_sockets(3)
    batch = SendBatch(sender.fileno(), lambda data, addr: None, capacity=8)
    sessions = [srtp_pair() for _ in receivers]
    a, b, c = (
        batch.srtp_writer(tx, r.getsockname())
        for (tx, _), r in zip(sessions, receivers, strict=True)
    )
    rounds = [(a, b, c), (c, a), (b,), (a, b, c)]
    for seq, audience in enumerate(rounds):
        assert batch.write_all(rtp(seq, b"round"), audience) == 0
        batch.flush()
        if seq == 1:
            batch.forget(receivers[2].getsockname())
    expected = {
        target: [rtp(seq, b"round") for seq, audience in enumerate(rounds) if target in audience]
        for target in (a, b, c)
    }
    for target, (_, rx), r in zip((a, b, c), sessions, receivers, strict=True):
        got = [rx.unprotect(r.recv(2000)) for _ in expected[target]]
        assert got == expected[target]
        r.setblocking(False)
        with pytest.raises(BlockingIOError):
            r.recv(2000)
    batch.close()
    for s in (sender, *receivers):
        s.close()


NAT_SCRIPT = """
import asyncio
import aioice
from sfu.rtc.udp_mux import UdpMux

async def main():
    mux = UdpMux(["192.0.2.10"], 0)  # TEST-NET-1: not an address of this namespace
    await mux.start()
    connection = aioice.Connection(ice_controlling=False)
    mux.attach(connection)
    await connection.gather_candidates()
    (candidate,) = connection.local_candidates
    print(mux.sockets[0].address[0], candidate.host, candidate.port == mux.port)
    await connection.close()
    mux.close()

asyncio.run(main())
"""


def test_an_address_in_front_of_a_nat_is_served_on_the_wildcard() -> None:
    """``--announce-address`` of a 1:1 NAT's (or a container host's) outside address.

    Run in a private network namespace: a wildcard bind in the test process
    would listen on every interface of the machine.
    """
    command = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "-r", "--net"]
    if (
        None in (shutil.which("unshare"), shutil.which("ip"))
        or subprocess.run([*command, "true"]).returncode
    ):
        pytest.skip("needs a private network namespace (unshare, ip)")
    # Its loopback must be up: with no local addresses at all, any bind would succeed.
    script = f"ip link set lo up && exec {sys.executable} -c '{NAT_SCRIPT}'"
    done = subprocess.run(
        [*command, "sh", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0.0.0.0", "192.0.2.10", "True"]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_clients_are_served_through_the_batch_too() -> None:
    server = PodiumServer(make_config(media=MediaConfig(announce_addresses=("::1",))))
    await server.start()
    clients = []
    try:
        for identity, role, track in (
            ("alice", "speaker", ToneTrack(550)),
            ("bob", "listener", None),
        ):
            client = await PodiumClient.connect(
                server.url, token(identity, role), publish=track, host_addresses=["::1"]
            )
            clients.append(client)
            await client.wait_connected()
        listener = clients[1]
        await eventually(lambda: listener.slots[0].participant == "alice")
        track = listener.slots[0].track  # type: ignore[assignment]
        assert track is not None
        samples = await record(track, 1.0)
        assert abs(dominant_frequency(samples[12000:]) - 550) < 5
        assert server.udp is not None and server.udp.dump()["batched_datagrams"] > 40
    finally:
        for client in clients:
            await client.close()
        await server.stop()


def test_podium_serve_behind_a_nat_starts_under_uvloop_and_clients_get_media() -> None:
    """The documented 1:1 NAT / Docker set-up, through ``podium serve`` itself (uvloop).

    uvloop reports a failed bind without an errno (the real one is its ``__cause__``);
    the fallback to the wildcard socket must see through that.  See tests/netns.py.
    """
    why = namespaces_missing()
    if why:
        pytest.skip(why)
    result = run_scenario("nat")
    assert "event loop: uvloop" in result["log"]
    assert f"{NAT_ADDRESS} is not a local address: serving it on 0.0.0.0" in result["log"]
    assert f"0.0.0.0:{UDP_PORT}" in result["sockets"]
    assert result["remote"] == [NAT_ADDRESS, UDP_PORT]
    assert abs(result["frequency"] - TONE) < 5


@pytest.mark.parametrize("length", [16, 22, 256])
def test_ice_strings_are_ice_characters_of_the_asked_length(length: int) -> None:
    drawn = {ice_string(length) for _ in range(200)}
    assert len(drawn) == 200
    assert all(re.fullmatch(f"[A-Za-z0-9+/]{{{length}}}", s) for s in drawn)
