"""The SRTP relay between nodes over real loopback sockets: who may send, what gets in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sfu.config import MediaConfig
from sfu.relay import RelayPacket, encode
from sfu.rtc.media_room import MediaRoomSetup
from sfu.rtc.relay import RelayedMediaRoom, RelayEndpoint, new_key
from tests.conftest import eventually


async def _noop(identity: str, state: str) -> None:
    return None


@pytest.fixture
async def endpoints() -> AsyncIterator[tuple[RelayEndpoint, RelayEndpoint, RelayedMediaRoom]]:
    origin, edge = RelayEndpoint("127.0.0.1"), RelayEndpoint("127.0.0.1")
    await origin.start()
    await edge.start()
    origin.set_peers({"edge": (("127.0.0.1", edge.port), edge.key)})
    edge.set_peers({"origin": (("127.0.0.1", origin.port), origin.key)})
    media = RelayedMediaRoom(
        MediaRoomSetup("r", MediaConfig(), lambda e: None, _noop), edge, "origin"
    )
    yield origin, edge, media
    await media.close()
    origin.close()
    edge.close()


def tone(seq: int) -> RelayPacket:
    return RelayPacket("r", "alice", 30, seq, seq * 960, False, b"\xfc" + bytes(40))


async def test_a_registered_node_is_heard_once_per_packet(
    endpoints: tuple[RelayEndpoint, RelayEndpoint, RelayedMediaRoom],
) -> None:
    origin, edge, media = endpoints
    for seq in range(5):
        origin.send(["edge"], tone(seq))
    await eventually(lambda: media.stats["relay_packets_in"] == 5)
    assert "alice" in media.room.participants and media.plan.relayed == {"alice"}
    assert media.room.participants["alice"].producer.packets == 5
    assert origin.stats["packets_out"] == 5 and edge.stats["packets_in"] == 5


async def test_a_relayed_speakers_new_peer_connection_resyncs_the_streams(
    endpoints: tuple[RelayEndpoint, RelayEndpoint, RelayedMediaRoom],
) -> None:
    """A speaker that renegotiated on its node numbers afresh: its streams here must resync
    (as on that node), not jump by a random amount that SRTP refuses as replays."""
    origin, _, media = endpoints
    for seq in (100, 101, 105, 106):  # a small gap is loss, not a new uplink
        origin.send(["edge"], tone(seq))
    await eventually(lambda: media.stats["relay_packets_in"] == 4)
    assert media.stats["relay_uplink_renewed"] == 0
    for seq in (40_000, 40_001):  # numbered afresh, at random
        origin.send(["edge"], tone(seq))
    await eventually(lambda: media.stats["relay_packets_in"] == 6)
    assert media.stats["relay_uplink_renewed"] == 1


async def test_strangers_wrong_keys_replays_and_tampering_are_refused(
    endpoints: tuple[RelayEndpoint, RelayEndpoint, RelayedMediaRoom],
) -> None:
    origin, edge, media = endpoints
    stranger = RelayEndpoint("127.0.0.1")
    await stranger.start()
    stranger.set_peers({"edge": (("127.0.0.1", edge.port), edge.key)})
    stranger.send(["edge"], tone(1))  # a valid relay packet, from an unregistered address
    await eventually(lambda: edge.stats["unknown_sender"] == 1)
    stranger.close()

    # From a registered node's address, but protected with a key the cluster never published.
    impostor = RelayEndpoint("127.0.0.1", key=new_key())
    await impostor.start()
    impostor.set_peers({"edge": (("127.0.0.1", edge.port), edge.key)})
    edge.set_peers(
        {
            "origin": (("127.0.0.1", origin.port), origin.key),
            "other": (("127.0.0.1", impostor.port), new_key()),
        }
    )
    impostor.send(["edge"], tone(2))
    await eventually(lambda: edge.stats["auth_failed"] == 1)

    # Clear RTP (no SRTP at all) and a genuine packet tampered with in flight.
    assert impostor.transport is not None
    impostor.transport.sendto(encode(tone(3), 1), ("127.0.0.1", edge.port))
    await eventually(lambda: edge.stats["auth_failed"] == 2)
    impostor.close()
    assert media.stats["relay_packets_in"] == 0 and "alice" not in media.room.participants


async def test_replayed_and_modified_packets_are_refused(
    endpoints: tuple[RelayEndpoint, RelayEndpoint, RelayedMediaRoom],
) -> None:
    origin, edge, media = endpoints
    sent: list[bytes] = []
    transport = origin.transport
    assert transport is not None
    real_sendto = transport.sendto

    def sendto(data: bytes, addr: tuple[str, int]) -> None:  # what a sniffer would capture
        sent.append(data)
        real_sendto(data, addr)

    transport.sendto = sendto  # type: ignore[method-assign, assignment]
    origin.send(["edge"], tone(1))
    await eventually(lambda: media.stats["relay_packets_in"] == 1)
    # Sent again from the origin's own address, as a spoofed source would be: once a
    # replay, once with a bit flipped.
    tampered = bytearray(sent[0])
    tampered[20] ^= 1
    for data in (sent[0], bytes(tampered)):
        real_sendto(data, ("127.0.0.1", edge.port))
    await eventually(lambda: edge.stats["auth_failed"] == 2)
    assert media.stats["relay_packets_in"] == 1
