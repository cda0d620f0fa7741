"""Slot streams over real connections: one rewritten stream per slot, shared by its listeners."""

from __future__ import annotations

from collections import defaultdict

from aiortc.rtcdtlstransport import RTCDtlsTransport

from sfu.rtp import parse_header
from signaling.client.client import PodiumClient
from signaling.server.server import PodiumServer
from tests.conftest import Connect, eventually
from tests.media import ToneTrack
from tests.rooms import media_of


def record_plaintext(client: PodiumClient) -> dict[int, dict[int, bytes]]:
    """Every RTP packet ``client`` receives, as its own SRTP session decrypted it:
    {SSRC: {sequence number: plaintext}}."""
    assert client.pc is not None
    dtls: RTCDtlsTransport = client.pc.getTransceivers()[1].receiver.transport
    received: dict[int, dict[int, bytes]] = defaultdict(dict)
    handle = dtls._handle_rtp_data

    async def tap(data: bytes, arrival_time_ms: int) -> None:
        header = parse_header(data)
        received[header.ssrc][header.sequence_number] = data
        await handle(data, arrival_time_ms)

    dtls._handle_rtp_data = tap  # type: ignore[method-assign]
    return received


def payloads(packets: dict[int, bytes]) -> set[bytes]:
    return {data[parse_header(data).payload_offset :] for data in packets.values()}


async def test_listeners_of_a_slot_get_identical_rtp_and_a_speaker_never_its_own(
    server: PodiumServer, connect: Connect
) -> None:
    s1 = await connect("s1", "speaker", publish=ToneTrack(440))
    await connect("s2", "speaker", publish=ToneTrack(660))
    listeners = [await connect(f"l{i}", on_packet=lambda _slot, _packet: None) for i in (1, 2)]
    await eventually(
        lambda: all({s.participant for s in c.slots} == {"s1", "s2", None} for c in listeners)
    )
    await eventually(lambda: {s.participant for s in s1.slots} == {"s2", None})
    l1, l2, own = (record_plaintext(c) for c in (*listeners, s1))
    await eventually(lambda: all(len(r) == 2 and min(map(len, r.values())) >= 60 for r in (l1, l2)))
    await eventually(lambda: sum(map(len, own.values())) >= 60)

    room = media_of(server.rooms["room1"]).room
    speaker_of = {ssrc: room.audience[i] for i, ssrc in enumerate(room.slot_ssrcs(3))}
    assert l1.keys() == l2.keys() and {speaker_of[ssrc] for ssrc in l1} == {"s1", "s2"}
    for ssrc, packets in l1.items():  # byte for byte, each after its own SRTP unprotect
        common = packets.keys() & l2[ssrc].keys()
        assert len(common) >= 40, ssrc
        assert all(packets[seq] == l2[ssrc][seq] for seq in common), speaker_of[ssrc]

    # Listeners get each speaker's untouched Opus payloads; s1's (personal) slot stream
    # carries s2's and never one of its own.
    by_speaker = {speaker_of[ssrc]: payloads(l1[ssrc]) | payloads(l2[ssrc]) for ssrc in l1}
    heard = set().union(*(payloads(packets) for packets in own.values()))
    assert not heard & by_speaker["s1"]
    assert len(heard & by_speaker["s2"]) >= 0.8 * len(heard)
