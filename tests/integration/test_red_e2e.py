"""RED (RFC 2198) end to end: negotiation, per-subscriber payloads, loss repair through a relay.

Real aiortc peers on loopback.  A RED speaker sends each Opus frame with the
previous one, as Chrome does; listeners take packets undecoded (``on_packet``)
so the test sees exactly what the server sent.  ``ImpairmentRelay`` drops
packets on the speaker's uplink and on a listener's downlink.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import pytest
from aiortc.rtp import RtpPacket

from benchmarks.impairment_relay import Impairment, ImpairmentRelay, connect_through
from sfu.red import parse_red
from signaling.client.client import PodiumClient
from signaling.server.server import PodiumServer
from tests.conftest import LOOPBACK, Connect, eventually, token
from tests.media import ToneTrack, dominant_frequency, record
from tests.rooms import media_of

RED_PT, OPUS_PT = 63, 111
FRAME = 960


@dataclass
class Packets:
    """What one listener's slot 0 received: sequence number → (payload type, timestamp, payload)."""

    got: dict[int, tuple[int, int, bytes]] = field(default_factory=dict)

    def on_packet(self, slot: int, packet: RtpPacket) -> None:
        if slot == 0:
            self.got[packet.sequence_number] = (
                packet.payload_type,
                packet.timestamp,
                packet.payload,
            )

    def missing(self) -> list[int]:
        """Sequence numbers absent between the first and last received (no wraparound here)."""
        seqs = sorted(self.got)
        return [s for s in range(seqs[0], seqs[-1]) if s not in self.got] if seqs else []

    def recovered(self, lost: int) -> bool:
        """Whether a later packet carried frame ``lost`` as RED redundancy."""
        before = max(s for s in self.got if s < lost)
        expected_ts = self.got[before][1] + (lost - before) * FRAME
        for seq in range(lost + 1, lost + 4):
            if seq in self.got:
                _, ts, payload = self.got[seq]
                if any(ts - b.timestamp_offset == expected_ts for b in parse_red(payload)[:-1]):
                    return True
        return False


async def test_red_is_negotiated_where_offered_and_plain_opus_goes_to_everyone_else(
    server: PodiumServer, connect: Connect
) -> None:
    speaker = await connect("speaker", "speaker", publish=ToneTrack(440), red=True)
    red, plain = Packets(), Packets()
    await connect("red", on_packet=red.on_packet, red=True)
    await connect("plain", on_packet=plain.on_packet)
    decoded = await connect("decoded", red=True)  # decoded slot tracks stay plain Opus
    await eventually(lambda: len(red.got) > 50 and len(plain.got) > 50)

    answer = media_of(server.rooms["room1"]).peers["speaker"].pc.localDescription.sdp
    assert re.search(r"m=audio \d+ UDP/TLS/RTP/SAVPF 63 111\r\n", answer)  # RED leads
    assert "a=rtpmap:63 red/48000/2" in answer and "a=fmtp:63 111/111" in answer
    assert speaker.pc is not None
    # Every packet to the RED listener is RED around Opus, with the previous frame.
    assert {pt for pt, _, _ in red.got.values()} == {RED_PT}
    seqs = sorted(red.got)
    for prev, seq in zip(seqs[-30:-1], seqs[-29:], strict=True):
        blocks = parse_red(red.got[seq][2])
        assert [b.payload_type for b in blocks] == [OPUS_PT, OPUS_PT]
        assert blocks[0].data == parse_red(red.got[prev][2])[-1].data
    # A listener that did not negotiate RED never receives a RED packet.
    assert {pt for pt, _, _ in plain.got.values()} == {OPUS_PT}
    assert decoded.slots[0].track is not None
    assert abs(dominant_frequency(await record(decoded.slots[0].track, 1.0)) - 440) < 5


@pytest.mark.slow  # over 5 s: runs in CI, not in the quick default tier
async def test_losses_are_repaired_from_red_on_both_legs(server: PodiumServer) -> None:
    uplink = ImpairmentRelay(up=Impairment(loss=0.05), seed=3)
    downlink = ImpairmentRelay(down=Impairment(loss=0.05), seed=4)
    clients: list[PodiumClient] = []
    for relay in (uplink, downlink):
        await relay.start()
    red, plain = Packets(), Packets()
    try:
        clients.append(
            await connect_through(
                downlink,
                server.url,
                token("red"),
                host_addresses=LOOPBACK,
                on_packet=red.on_packet,
                red=True,
            )
        )
        clients.append(
            await PodiumClient.connect(
                server.url, token("plain"), host_addresses=LOOPBACK, on_packet=plain.on_packet
            )
        )
        clients.append(
            await connect_through(
                uplink,
                server.url,
                token("speaker", "speaker"),
                host_addresses=LOOPBACK,
                publish=ToneTrack(440),
                red=True,
            )
        )
        await eventually(lambda: len(plain.got) >= 300, timeout=20)
        await asyncio.sleep(0.2)  # the last packets in flight
        repaired = media_of(server.rooms["room1"]).stats["red_recovered"]
    finally:
        for client in clients:
            await client.close()
        for relay in (uplink, downlink):
            relay.close()

    # The server's own losses: every frame whose packet or next packet arrived is repaired.
    lost_up = {seq for _, seq in uplink.up.dropped_rtp}
    unrecoverable = {s for s in lost_up if (s + 1) & 0xFFFF in lost_up}
    assert len(lost_up) >= 5, uplink.up.dropped  # the relay really dropped packets
    assert len(plain.missing()) <= len(unrecoverable), (plain.missing(), unrecoverable)
    assert repaired >= len(lost_up - unrecoverable) - 2  # (the last ones may be unanswered)
    # The RED listener's own losses: recovered from the next packets' redundancy.
    assert downlink.down.dropped >= 5
    lost_down = red.missing()
    own = len(lost_down) - len(plain.missing())  # frames the server never had are not its loss
    recovered = sum(red.recovered(s) for s in lost_down)
    assert own >= 5 and recovered >= 0.8 * own, (recovered, own, len(lost_down))


async def test_listeners_loss_reaches_the_speaker_in_receiver_reports(
    server: PodiumServer, connect: Connect
) -> None:
    """What turns on a browser's Opus in-band FEC: the server's receiver reports on the
    speaker's (lossless) uplink carry the loss its listener reports (``sfu.loss``)."""
    speaker = await connect("speaker", "speaker", publish=ToneTrack(440))
    assert speaker.pc is not None
    sender = speaker.pc.getTransceivers()[0].sender

    async def reported_loss() -> int:
        stats = await sender.getStats()
        remote = [s for s in stats.values() if s.type == "remote-inbound-rtp"]
        return int(remote[0].fractionLost) if remote else -1

    await eventually(lambda: len(media_of(server.rooms["room1"]).peers) == 1)
    relay = ImpairmentRelay(down=Impairment(loss=0.1), seed=5)
    await relay.start()
    heard = Packets()
    listener = await connect_through(
        relay, server.url, token("lossy"), host_addresses=LOOPBACK, on_packet=heard.on_packet
    )
    try:
        losses: list[int] = []

        async def poll() -> None:
            while not losses or losses[-1] < 13:  # >= 5 % of 256
                losses.append(await reported_loss())
                await asyncio.sleep(0.2)

        await asyncio.wait_for(poll(), 15)
    finally:
        await listener.close()
        relay.close()
    assert relay.down.dropped > 0
