"""An ICE restart on a live peer connection (RFC 8445 §9), as podium.js makes one.

aiortc cannot restart ICE itself, so the test client does by hand what a browser does:
new local ICE credentials on its own connection, a new offer (same DTLS certificate) sent
with ``ice_restart``, and the answer's new server credentials. The server must keep the
same peer connection (DTLS session, SRTP keys, slots), route checks by the new
credentials only, and keep forwarding; a plain offer is still a replacement, and a
restart with no peer connection to restart is refused.
"""

from __future__ import annotations

import re
import time

import pytest
from aioice.ice import Connection
from aioice.utils import random_string
from aiortc import RTCSessionDescription

from signaling.client.client import PodiumClient
from signaling.server.server import PodiumServer
from signaling.wire.errors import PodiumError
from tests.conftest import LOOPBACK, eventually, token
from tests.media import ToneTrack
from tests.netcut import Link, client_class
from tests.rooms import media_of

ROOM = "restart"


def _ice(client: PodiumClient) -> Connection:
    assert client.pc is not None
    connection: Connection = client.pc.getTransceivers()[
        0
    ].receiver.transport.transport.iceGatherer._connection
    return connection


def _credentials(sdp: str) -> tuple[str, str]:
    ufrag = re.search(r"^a=ice-ufrag:(\S+)", sdp, re.M)
    password = re.search(r"^a=ice-pwd:(\S+)", sdp, re.M)
    assert ufrag is not None and password is not None
    return ufrag[1], password[1]


async def _restart(client: PodiumClient) -> str:
    """What a browser's ``restartIce()`` does, by hand; returns the server's answer."""
    assert client.pc is not None
    connection = _ice(client)
    connection._local_username = random_string(4)
    connection._local_password = random_string(22)
    offer = await client.pc.createOffer()
    await client.pc.setLocalDescription(offer)
    answer = await client.request("offer", sdp=client.pc.localDescription.sdp, ice_restart=True)
    sdp = str(answer["sdp"])
    connection.remote_username, connection.remote_password = _credentials(sdp)
    await client.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
    return sdp


async def _speaker_and_listener(
    server: PodiumServer, link: Link | None = None
) -> tuple[PodiumClient, PodiumClient, list[float]]:
    """A speaker's tone, and a listener (through ``link``, if given) who notes each
    packet's arrival time."""
    speaker = await PodiumClient.connect(
        server.url,
        token("spk", "speaker", room=ROOM),
        publish=ToneTrack(440),
        host_addresses=LOOPBACK,
    )
    arrivals: list[float] = []
    listener = await (PodiumClient if link is None else client_class(link)).connect(
        server.url if link is None else link.url,
        token("lis", "listener", room=ROOM),
        host_addresses=LOOPBACK,
        on_packet=lambda slot, packet: arrivals.append(time.monotonic()),
    )
    return speaker, listener, arrivals


async def _nominate(client: PodiumClient) -> None:
    """What a browser's controlling agent does once its restarted checks succeed: a check
    with USE-CANDIDATE on the pair it picked (aioice's consent checks never nominate)."""
    connection = _ice(client)
    pair = connection._nominated[1]
    assert connection.remote_password is not None
    await pair.protocol.request(
        connection.build_request(pair, nominate=True),
        pair.remote_addr,
        integrity_key=connection.remote_password.encode(),
    )


async def test_an_ice_restart_from_another_address_moves_the_audio_there(
    server: PodiumServer,
) -> None:
    """The case an ICE restart is for: the listener's network changed under it."""
    assert server.udp is not None
    link = await Link(server.port, server.udp.port).start()
    speaker, listener, arrivals = await _speaker_and_listener(server, link)
    try:
        await eventually(lambda: len(arrivals) > 20, timeout=10)
        peer = media_of(server.rooms[ROOM]).peers["lis"]
        await link.rebind()  # the server's packets to the old address are now lost
        await _restart(listener)
        await _nominate(listener)
        restarted = time.monotonic()
        await eventually(lambda: sum(t > restarted + 0.5 for t in arrivals) > 20, timeout=5)
        server_side = peer.pc.getTransceivers()[0].receiver.transport.transport
        assert server_side.iceGatherer._connection._nominated[1].remote_addr == (
            "127.0.0.1",
            link.inner_port,
        )
        assert peer.connection_state == "connected"
    finally:
        await listener.close()
        await speaker.close()
        await link.close()


@pytest.mark.slow  # waits out the client's consent checks after the restart
async def test_an_ice_restart_keeps_the_peer_connection_and_the_audio(
    server: PodiumServer,
) -> None:
    speaker, listener, arrivals = await _speaker_and_listener(server)
    try:
        await eventually(lambda: len(arrivals) > 20, timeout=10)
        media = media_of(server.rooms[ROOM])
        peer = media.peers["lis"]
        before = _credentials(peer.pc.localDescription.sdp)
        assert server.udp is not None
        assert server.udp.lookup(before[0]) is not None

        answer = await _restart(listener)

        assert media.peers["lis"] is peer  # the same peer connection: DTLS, keys, slots kept
        assert peer.ice_restarts == 1 and media.stats["ice_restarts"] == 1
        after = _credentials(answer)
        assert after[0] != before[0] and after[1] != before[1]
        assert server.udp.lookup(after[0]) is not None  # the new ufrag routes checks
        assert server.udp.lookup(before[0]) is None  # the old one no longer does
        # Audio goes on, and the client's consent checks (new credentials) keep the
        # server's side alive past the point where stale ones would have been refused.
        restarted = time.monotonic()
        await eventually(lambda: sum(t > restarted + 6.0 for t in arrivals) > 20, timeout=12)
        assert peer.connection_state == "connected"
        assert server.udp.stats["unauthenticated_checks"] == 0
    finally:
        await listener.close()
        await speaker.close()


async def test_an_offer_from_another_peer_connection_replaces_the_old_one(
    server: PodiumServer,
) -> None:
    listener = await PodiumClient.connect(
        server.url, token("lis", "listener", room=ROOM), host_addresses=LOOPBACK
    )
    try:
        media = media_of(server.rooms[ROOM])
        first = media.peers["lis"]
        await listener._new_peer_connection()  # a new certificate: not a restart
        assert media.peers["lis"] is not first
        assert media.stats["ice_restarts"] == 0
        await listener.wait_connected()
    finally:
        await listener.close()


async def test_an_ice_restart_without_a_peer_connection_is_refused(server: PodiumServer) -> None:
    listener = await PodiumClient.connect(
        server.url, token("lis", "listener", room=ROOM), host_addresses=LOOPBACK
    )
    bare = await PodiumClient.connect(server.url, token("bare", "listener", room=ROOM), media=False)
    try:
        assert listener.pc is not None
        offer = listener.pc.localDescription.sdp  # any well-formed offer
        with pytest.raises(PodiumError) as refused:
            await bare.request("offer", sdp=offer, ice_restart=True)
        assert refused.value.code == "invalid_state"
        assert "bare" not in media_of(server.rooms[ROOM]).peers
    finally:
        await bare.close()
        await listener.close()
