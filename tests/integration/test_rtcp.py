"""RTCP stays truthful although forwarded packets bypass aiortc's senders."""

from __future__ import annotations

import asyncio

from aiortc import RTCRtpReceiver

from signaling.server.server import PodiumServer
from tests.conftest import Connect, eventually
from tests.media import ToneTrack
from tests.rooms import media_of


def sender_reports(receiver: RTCRtpReceiver) -> list[object]:
    stats = receiver._RTCRtpReceiver__stats  # type: ignore[attr-defined]
    return [s for s in stats.values() if s.type == "remote-outbound-rtp"]


async def test_sender_reports_describe_what_was_forwarded_and_silence_sends_none(
    server: PodiumServer, connect: Connect
) -> None:
    listener = await connect("listener")
    speaker = await connect("speaker", "speaker", publish=ToneTrack(440))
    await eventually(lambda: listener.slots[0].participant == "speaker")
    assert listener.pc is not None and speaker.pc is not None
    receivers = [t.receiver for t in listener.pc.getTransceivers()[1:]]

    # The active slot gets SRs counting the packets the server really forwarded...
    await eventually(lambda: bool(sender_reports(receivers[0])), timeout=5)
    await asyncio.sleep(1.5)
    (report,) = sender_reports(receivers[0])
    forwarded = media_of(server.rooms["room1"]).room.participants["listener"].consumers[0]
    assert 0 < report.packetsSent <= forwarded.forwarder.packets  # type: ignore[attr-defined, union-attr]
    # ... idle slots get none (no reports about nothing).
    assert sender_reports(receivers[1]) == [] and sender_reports(receivers[2]) == []

    # A listener's trackless uplink sends no SRs either, until it publishes.
    uplink = media_of(server.rooms["room1"]).peers["listener"].pc.getTransceivers()[0].receiver
    assert sender_reports(uplink) == []
    await listener.publish(ToneTrack(660))
    await eventually(lambda: bool(sender_reports(uplink)), timeout=5)

    # The server's receiver for that uplink slept until the first packet and now reports.
    stats = listener.pc.getTransceivers()[0].sender._RTCRtpSender__stats  # type: ignore[attr-defined]
    await eventually(lambda: any(s.type == "remote-inbound-rtp" for s in stats.values()), timeout=5)
