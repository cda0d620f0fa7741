"""Real aiortc peers over loopback exchanging real Opus through the SFU."""

from __future__ import annotations

import asyncio

import numpy as np

from signaling.client.client import PodiumClient
from signaling.server.server import PodiumServer
from tests.conftest import Connect, eventually
from tests.media import ToneTrack, dominant_frequency, record, tone_level_db
from tests.rooms import media_of

TONES = {"s440": 440.0, "s660": 660.0, "s880": 880.0}
SETTLE = 24_000  # skip the first 0.5 s of each recording (jitter buffer fill)


async def record_all(clients: list[PodiumClient], seconds: float) -> list[list[np.ndarray]]:
    per_slot = await asyncio.gather(
        *(record(slot.track, seconds) for c in clients for slot in c.slots if slot.track)
    )
    it = iter(per_slot)
    return [[next(it) for _ in c.slots] for c in clients]


async def test_three_speakers_five_listeners_hear_the_right_tone_in_the_right_slot(
    connect: Connect,
) -> None:
    speakers = [await connect(pid, "speaker", publish=ToneTrack(f)) for pid, f in TONES.items()]
    listeners = [await connect(f"listener{i}") for i in range(5)]
    await eventually(lambda: all({s.participant for s in c.slots} == set(TONES) for c in listeners))
    await eventually(
        lambda: all(sum(s.participant is not None for s in c.slots) == 2 for c in speakers)
    )

    clients = listeners + speakers
    recordings = await record_all(clients, 2.0)

    for client, slots in zip(clients, recordings, strict=True):
        me = client.join_info["participant"]["identity"]
        for slot, samples in zip(client.slots, slots, strict=True):
            if me in TONES:  # nobody hears themself, not even faintly
                assert tone_level_db(samples[SETTLE:], TONES[me]) < -60, (me, slot.index)
            if slot.participant is None:
                assert tone_level_db(samples, 440) < -60 and tone_level_db(samples, 880) < -60
                continue
            expected = TONES[slot.participant]
            got = dominant_frequency(samples[SETTLE:])
            assert abs(got - expected) < 5, (me, slot.index, slot.participant, got)
            for other, freq in TONES.items():
                if other != slot.participant:  # each slot carries one speaker only
                    assert (
                        tone_level_db(samples[SETTLE:], freq)
                        < tone_level_db(samples[SETTLE:], expected) - 30
                    )


async def test_listener_with_a_send_track_is_heard_by_nobody(
    server: PodiumServer, connect: Connect
) -> None:
    speaker = await connect("speaker", "speaker", publish=ToneTrack(440))
    sneaky = await connect("sneaky", "listener", publish=ToneTrack(1000))
    others = [await connect(f"l{i}") for i in range(2)]
    await eventually(lambda: all(c.slots[0].participant == "speaker" for c in [sneaky, *others]))
    recordings = await record_all([speaker, *others], 1.5)
    for client, slots in zip([speaker, *others], recordings, strict=True):
        assert all(s.participant != "sneaky" for s in client.slots)
        for samples in slots:
            assert tone_level_db(samples, 1000) < -60
    for samples in recordings[1]:  # listeners still hear the real speaker
        if len(samples):
            assert abs(dominant_frequency(samples[SETTLE:]) - 440) < 5
    dropped = media_of(server.rooms["room1"]).room.dropped
    assert dropped["not_allowed"] > 25  # its packets reached the SFU and were refused there
