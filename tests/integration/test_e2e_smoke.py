from __future__ import annotations

from signaling.server.server import PodiumServer
from tests.conftest import Connect, eventually
from tests.media import ToneTrack, dominant_frequency, record
from tests.rooms import media_of


async def test_one_speaker_one_listener(server: PodiumServer, connect: Connect) -> None:
    speaker = await connect("alice", "speaker", publish=ToneTrack(440, amplitude=0.5))
    listener = await connect("bob")
    await eventually(lambda: listener.slots[0].participant == "alice")
    track = listener.slots[0].track
    assert track is not None
    samples = await record(track, 1.5)
    assert abs(dominant_frequency(samples[24000:]) - 440) < 5
    assert speaker.slots[0].participant is None

    # The answer advertises Opus DTX + in-band FEC and the audio-level extension, bundled.
    assert listener.pc is not None and listener.pc.remoteDescription is not None
    answer = listener.pc.remoteDescription.sdp
    assert "useinbandfec=1" in answer and "usedtx=1" in answer
    assert "urn:ietf:params:rtp-hdrext:ssrc-audio-level" in answer
    assert "a=group:BUNDLE" in answer and "a=rtcp-mux" in answer
    assert "G722" not in answer and "PCMU" not in answer  # forwarded Opus only

    # The server never decodes what it forwards: its uplink receiver has no decoder thread.
    uplink = media_of(server.rooms["room1"]).peers["alice"].pc.getTransceivers()[0].receiver
    assert uplink._RTCRtpReceiver__decoder_thread is None  # type: ignore[attr-defined]

    # Every inbound packet's RFC 6464 level reaches the core: a -6 dBFS tone reads ~ 9 dBov.
    producer = media_of(server.rooms["room1"]).room.participants["alice"].producer
    assert producer.packets > 50 and producer.level_time is not None
    assert 3 <= producer.audio_level <= 15
