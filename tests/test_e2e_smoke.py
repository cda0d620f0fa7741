from __future__ import annotations

import asyncio

from tests.conftest import Connect
from tests.media import ToneTrack, dominant_frequency, record


async def test_one_speaker_one_listener(connect: Connect) -> None:
    speaker = await connect("alice", "speaker", publish=ToneTrack(440))
    listener = await connect("bob")
    for _ in range(100):
        if listener.slots[0].participant == "alice":
            break
        await asyncio.sleep(0.05)
    assert listener.slots[0].participant == "alice"
    samples = await record(listener.slots[0].track, 1.5)
    assert abs(dominant_frequency(samples[24000:]) - 440) < 5
    assert speaker.slots[0].participant is None
