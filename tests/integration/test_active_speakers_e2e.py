"""Loudest-speaker routing over real connections: slots follow who is talking."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from sfu.config import MediaConfig
from signaling.client.client import Event, PodiumClient
from signaling.server.server import PodiumServer
from tests.conftest import LOOPBACK, Connect, eventually, make_config
from tests.media import Recorder, ToneTrack, dominant_frequency, record, tone_level_db
from tests.rooms import media_of

FREQS = {"s1": 350.0, "s2": 500.0, "s3": 650.0, "s4": 800.0, "s5": 950.0, "s6": 1100.0}
PHASE = 3.0  # a silent ex-dominant is routed ~0.6 s more, then held 1 s: settled by 2 s
# Turns, overlaps and a full stage. The dominant speaker is always routed, so a
# turn where K new voices start at once would wait for the dominant to change.
SCRIPT = [{"s1", "s2"}, {"s3", "s4"}, {"s5", "s6"}, {"s2", "s3", "s5"}]


@pytest.fixture
async def server() -> AsyncIterator[PodiumServer]:
    """Slots held 1 s after a speaker stops, so each phase ends settled."""
    media = MediaConfig(announce_addresses=LOOPBACK, speaker_hold=1.0)
    srv = PodiumServer(make_config(media=media))
    await srv.start()
    yield srv
    await srv.stop()


def talk_spans(speaker: str) -> tuple[tuple[float, float], ...]:
    return tuple((i * PHASE, (i + 1) * PHASE) for i, who in enumerate(SCRIPT) if speaker in who)


def in_slots(client: PodiumClient) -> set[str]:
    return {s.participant for s in client.slots if s.participant is not None}


async def follow_speaking(client: PodiumClient, shown: dict[str, bool]) -> None:
    async for event in client.events():
        if event.name == "speaking":
            for change in event.data["speakers"]:
                shown[change["participant"]] = change["speaking"]


@pytest.mark.slow
async def test_six_speakers_three_slots_follow_the_talkers(
    server: PodiumServer, connect: Connect
) -> None:
    listener = await connect("listener")
    tracks = {pid: ToneTrack(f, amplitude=0.25, talk=talk_spans(pid)) for pid, f in FREQS.items()}
    for pid, track in tracks.items():
        await connect(pid, "speaker", publish=track)
    shown: dict[str, bool] = {}
    watcher = asyncio.create_task(follow_speaking(listener, shown))
    recorders = [Recorder(slot.track) for slot in listener.slots if slot.track]
    await eventually(lambda: all(t.started is not None for t in tracks.values()))
    t0 = time.monotonic() + 0.2
    for track in tracks.values():
        track.epoch = t0

    for phase, talkers in enumerate(SCRIPT):
        start = t0 + phase * PHASE
        # Slots follow the change within 500 ms ...
        await asyncio.sleep(max(0.0, start + 0.5 - time.monotonic()))
        assert talkers <= in_slots(listener), (phase, in_slots(listener))
        # ... and listeners hear exactly the talkers, each in the slot named for it. (A
        # speaker who just stopped may still hold a slot for speaker_hold: it is silent.)
        await asyncio.sleep(max(0.0, start + PHASE - 1.0 - time.monotonic()))
        layout = [s.participant for s in listener.slots]
        await asyncio.sleep(0.8)
        for before, after in zip(layout, [s.participant for s in listener.slots], strict=True):
            assert before == after or before not in talkers, phase  # talkers stay put
        assert talkers <= in_slots(listener), (phase, in_slots(listener))
        window = (start + PHASE - 0.9, start + PHASE - 0.2)
        for who, recorder in zip(layout, recorders, strict=True):
            samples = recorder.between(*window)
            for pid, freq in FREQS.items():
                if pid not in talkers:
                    assert tone_level_db(samples, freq) < -45, (phase, who, pid)
            if who in talkers:
                assert abs(dominant_frequency(samples) - FREQS[who]) < 10, (phase, who)
        # Speaking indicators match the script.
        assert {pid for pid, on in shown.items() if on} == talkers, (phase, shown)

    media = media_of(server.rooms["room1"]).room
    assert media.dropped["not_selected"] > 0  # silent speakers' packets stopped before fan-out
    assert in_slots(listener) <= SCRIPT[-1] | SCRIPT[-2]  # nobody silent for long is routed
    watcher.cancel()
    for recorder in recorders:
        recorder.stop()


async def test_speaker_without_audio_levels_is_detected_by_decoding(
    server: PodiumServer, connect: Connect
) -> None:
    listener = await connect("listener")
    quiet = ToneTrack(700, talk=((0.0, 30.0),))
    quiet.epoch = time.monotonic()
    await connect("legacy", "speaker", publish=quiet, audio_level=False)
    event: Event = await listener.next_event(
        "speaking", where=lambda d: any(c["participant"] == "legacy" for c in d["speakers"])
    )
    assert any(c["speaking"] for c in event.data["speakers"] if c["participant"] == "legacy")
    await eventually(lambda: in_slots(listener) == {"legacy"})
    media = media_of(server.rooms["room1"])
    assert media.stats["pcm_decoded"] > 0
    answer = media.peers["legacy"].pc.localDescription.sdp
    assert "ssrc-audio-level" not in answer  # really no level on its packets
    track = listener.slots[0].track
    assert track is not None
    assert abs(dominant_frequency(await record(track, 1.0)) - 700) < 10
