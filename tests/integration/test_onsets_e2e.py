"""Speech onsets over real connections: short sounds after silence, first-audio delay.

A speaker (a real aiortc peer sending Opus) makes isolated 10 ms tone bursts
after silences long enough for its slot hold to expire, then a few talk
spurts; listeners take the forwarded packets undecoded, with arrival times.
Every burst must reach every listener, and a spurt's first audio must arrive
no later than its steady-state audio does (40 ms of slack).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from sfu.config import MediaConfig
from sfu.levels import pcm_level
from sfu.producer import VOICE_LEVEL
from sfu.rtc.levels import PcmDecoder
from signaling.server.server import PodiumServer
from tests.conftest import LOOPBACK, Connect, eventually, make_config
from tests.media import ToneTrack
from tests.rooms import media_of

TONE = 700.0
BURST = 0.010
SPURT = 1.0
SLACK = 0.040


class LoggedTone(ToneTrack):
    """A ToneTrack that notes when each frame left for the encoder and whether it is voiced."""

    def __init__(self, talk: tuple[tuple[float, float], ...]) -> None:
        super().__init__(TONE, amplitude=0.3, talk=talk)
        self.sent: list[tuple[float, bool]] = []

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        self.sent.append((time.monotonic(), pcm_level(frame.to_ndarray()) <= VOICE_LEVEL))
        return frame


class Listener:
    """Every forwarded packet: arrival time, RFC 6464 level, Opus payload."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, int | None, bytes]] = []

    def on_packet(self, slot: int, packet: RtpPacket) -> None:
        ext = packet.extensions.audio_level
        self.packets.append((time.monotonic(), ext[1] if ext else None, packet.payload))

    def voiced(self, start: float, end: float) -> list[float]:
        return [
            at
            for at, level, _ in self.packets
            if start <= at < end and level is not None and level <= VOICE_LEVEL
        ]

    def heard(self, start: float, end: float) -> tuple[float, float]:
        """Peak amplitude and main frequency of the audio decoded from the window's packets."""
        decoder = PcmDecoder()
        decoded = [decoder.decode(p) for at, _, p in self.packets if start <= at < end]
        chunks = [samples for samples in decoded if samples is not None]
        if not chunks:
            return 0.0, 0.0
        audio = np.concatenate(chunks)
        spectrum = np.abs(np.fft.rfft(audio))  # no window: a 10 ms burst sits near an edge
        frequency = float(np.fft.rfftfreq(len(audio), 1 / 48_000)[int(np.argmax(spectrum))])
        return float(np.max(np.abs(audio))), frequency


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[PodiumServer]:
    media = MediaConfig(announce_addresses=LOOPBACK, speaker_hold=request.param)
    srv = PodiumServer(make_config(media=media))
    await srv.start()
    yield srv
    await srv.stop()


async def onsets(connect: Connect, server: PodiumServer, bursts: int, silence: float) -> None:
    starts = [silence * (i + 1) for i in range(bursts)]
    spurts = [starts[-1] + silence * (i + 1) + SPURT * i for i in range(3)]
    talk = tuple((s, s + BURST) for s in starts) + tuple((s, s + SPURT) for s in spurts)
    track = LoggedTone(talk)
    listeners = [Listener() for _ in range(2)]
    for i, listener in enumerate(listeners):
        await connect(f"l{i}", on_packet=listener.on_packet)
    await connect("speaker", "speaker", publish=track)
    await eventually(lambda: track.started is not None)
    epoch = track.epoch = time.monotonic()
    end = epoch + spurts[-1] + SPURT + 0.5
    await eventually(lambda: time.monotonic() > end, timeout=end - epoch + 5)

    for listener in listeners:
        # A frame leaves when it starts: a burst's can arrive just before the burst's time.
        heard = [listener.heard(epoch + s - 0.05, epoch + s + 0.3) for s in starts]
        assert all(peak > 0.05 and abs(hz - TONE) < 30 for peak, hz in heard), heard
    for s in spurts:
        window = (epoch + s - 0.1, epoch + s + SPURT + 0.1)
        sent = [at for at, voiced in track.sent if voiced and window[0] <= at < window[1]]
        for listener in listeners:
            got = listener.voiced(epoch + s - 0.1, epoch + s + SPURT + 0.5)
            assert len(got) >= len(sent) - 2, (len(got), len(sent))
            onset = got[0] - sent[0]
            steady = float(np.median([g - t for g, t in zip(got[-20:], sent[-20:], strict=True)]))
            assert onset <= steady + SLACK, (s, onset, steady)
    assert media_of(server.rooms["room1"]).room.onsets >= bursts


@pytest.mark.slow  # over 5 s: runs in CI, not in the quick default tier
@pytest.mark.parametrize("server", [0.3], indirect=True)
async def test_short_sounds_after_silence_reach_every_listener(
    server: PodiumServer, connect: Connect
) -> None:
    await onsets(connect, server, bursts=4, silence=0.7)


@pytest.mark.slow
@pytest.mark.parametrize("server", [1.5], indirect=True)
async def test_twenty_10ms_bursts_after_2s_of_silence_all_reach_every_listener(
    server: PodiumServer, connect: Connect
) -> None:
    await onsets(connect, server, bursts=20, silence=2.0)
