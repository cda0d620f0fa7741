"""Mix mode over real connections: one stream per listener, mix-minus, limiter, live switching."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport

from sfu.config import MediaConfig
from signaling.client.client import PodiumClient
from signaling.server.server import PodiumServer
from tests.conftest import LOOPBACK, Connect, eventually, make_config
from tests.media import Recorder, ToneTrack, tone_level_db
from tests.rooms import media_of

A, B = 440.0, 660.0


@pytest.fixture
async def server() -> AsyncIterator[PodiumServer]:
    media = MediaConfig(announce_addresses=LOOPBACK, auto_mix_audience=3)
    srv = PodiumServer(make_config(media=media))
    await srv.start()
    yield srv
    await srv.stop()


def slot_sources(client: PodiumClient) -> list[str | None]:
    return [slot.participant for slot in client.slots]


async def mix_mode(host: PodiumClient, *clients: PodiumClient) -> None:
    reply = await host.request("set_media_mode", mode="mix")
    assert reply == {"mode": "mix", "mixing": True}
    await eventually(lambda: all(slot_sources(c)[0] == "mix" for c in clients))


async def listen(seconds: float, *clients: PodiumClient) -> list[np.ndarray]:
    """Slot 0 of each client, over the last ``seconds`` of a wait that lets the mix settle."""
    recorders = [Recorder(c.slots[0].track) for c in clients if c.slots[0].track]
    await asyncio.sleep(seconds + 0.6)
    end = time.monotonic()
    for recorder in recorders:
        recorder.stop()
    return [r.between(end - seconds, end) for r in recorders]


async def test_listener_hears_everyone_in_one_stream_and_speakers_not_themselves(
    server: PodiumServer, connect: Connect
) -> None:
    a = await connect("a", "host", publish=ToneTrack(A, 0.3))
    b = await connect("b", "speaker", publish=ToneTrack(B, 0.3))
    listener = await connect("listener")
    await eventually(lambda: {"a", "b"} <= set(slot_sources(listener)))  # forwarding first
    await mix_mode(a, a, b, listener)
    assert slot_sources(listener)[1:] == [None, None]  # the other slots fall silent
    heard_by_a, heard_by_b, heard = await listen(1.5, a, b, listener)
    assert tone_level_db(heard, A) > -30 and tone_level_db(heard, B) > -30
    assert abs(tone_level_db(heard, A) - tone_level_db(heard, B)) < 3
    assert tone_level_db(heard_by_a, B) - tone_level_db(heard_by_a, A) > 30
    assert tone_level_db(heard_by_b, A) - tone_level_db(heard_by_b, B) > 30
    media = media_of(server.rooms["room1"])
    assert sorted(media.mixing.mixer.mixed) == ["a", "b"]
    # Nothing but slot 0 carries packets to the listener, and only the mix.
    assert [c.source for c in media.room.participants["listener"].consumers] == ["mix", None, None]


def splatter_db(samples: np.ndarray, tones: tuple[float, ...]) -> float:
    """Energy outside ±50 Hz of ``tones`` relative to the energy inside."""
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 48_000)
    band = np.zeros(len(freqs), dtype=bool)
    for f in tones:
        band |= np.abs(freqs - f) < 50
    return float(10 * np.log10(spectrum[~band].sum() / spectrum[band].sum()))


async def test_loud_overlapping_voices_are_limited_not_wrapped(
    server: PodiumServer, connect: Connect
) -> None:
    a = await connect("a", "host", publish=ToneTrack(A, 0.9))
    await mix_mode(a, a)  # the others join a room that mixes already
    await connect("b", "speaker", publish=ToneTrack(B, 0.9))  # together: peaks near 1.8
    listener = await connect("listener")
    await eventually(lambda: slot_sources(listener) == ["mix", None, None])
    (heard,) = await listen(1.5, listener)
    assert float(np.max(np.abs(heard))) <= 1.0
    assert tone_level_db(heard, A) > -15 and tone_level_db(heard, B) > -15
    assert splatter_db(heard, (A, B)) < -35  # a wrapped sum is about +20, a clipped one -13


@pytest.mark.slow  # runs in CI, not in the quick default tier
async def test_live_switch_forward_mix_forward_keeps_audio_flowing(
    server: PodiumServer, connect: Connect
) -> None:
    a = await connect("a", "host", publish=ToneTrack(A, 0.3))
    await connect("b", "speaker", publish=ToneTrack(B, 0.3))
    listener = await connect("listener")
    await eventually(lambda: {"a", "b"} <= set(slot_sources(listener)))
    recorders = [Recorder(slot.track) for slot in listener.slots if slot.track]
    started = time.monotonic()
    await asyncio.sleep(1.0)
    await a.request("set_media_mode", mode="mix")
    await asyncio.sleep(1.5)
    assert slot_sources(listener) == ["mix", None, None]
    reply = await a.request("set_media_mode", mode="forward")
    assert reply == {"mode": "forward", "mixing": False}
    await asyncio.sleep(1.5)
    assert {"a", "b"} <= set(slot_sources(listener))
    ended = time.monotonic()
    for recorder in recorders:
        recorder.stop()
    audible = sorted(
        at
        for recorder in recorders
        for at, samples in recorder.frames
        if started + 0.3 <= at <= ended and np.sqrt(np.mean(samples**2)) > 0.05
    )
    gaps = np.diff([started + 0.3, *audible, ended])
    assert float(gaps.max()) < 0.2, f"audio stopped for {gaps.max() * 1000:.0f} ms"


def lossy(transport: RTCDtlsTransport) -> list[int]:
    """Between this client and the server: drop 1 RTP packet in 10, swap 1 pair in 10."""
    original = transport._send_rtp
    held: list[bytes] = []
    dropped: list[int] = []

    async def send_rtp(data: bytes) -> None:
        if 192 <= data[1] <= 223:  # RTCP
            await original(data)
            return
        seq = int.from_bytes(data[2:4], "big")
        if seq % 10 == 3:
            dropped.append(seq)
        elif seq % 10 == 6:
            held.append(data)  # goes out after the next one
        else:
            await original(data)
            while held:
                await original(held.pop())

    transport._send_rtp = send_rtp  # type: ignore[method-assign]
    return dropped


async def test_loss_and_reordering_on_a_speakers_uplink_do_not_break_the_mix(
    server: PodiumServer, connect: Connect
) -> None:
    a = await connect("a", "host", publish=ToneTrack(A, 0.3))
    b_track = ToneTrack(B, 0.3)
    b = await connect("b", "speaker", publish=b_track)
    assert b.pc is not None
    dropped = lossy(b.pc.getTransceivers()[0].sender.transport)
    listener = await connect("listener")
    await mix_mode(a, listener)
    (heard,) = await listen(2.0, listener)
    assert len(dropped) > 10
    # b is concealed, not cut: as loud as a, and the mix never stops.
    assert abs(tone_level_db(heard, A) - tone_level_db(heard, B)) < 3
    jitter = media_of(server.rooms["room1"]).mixing.mixer.buffers["b"].stats
    assert jitter["lost"] >= 10 and jitter["reordered"] >= 10
    assert media_of(server.rooms["room1"]).mixing.stats["concealed"] >= 10


async def test_auto_mode_mixes_while_the_audience_is_large(
    server: PodiumServer, connect: Connect
) -> None:
    host = await connect("host", "host")  # its peer connection starts the room's periodic jobs
    reply = await host.request("set_media_mode", mode="auto")
    assert reply == {"mode": "auto", "mixing": False}

    async def mixing_becomes(value: bool, change: Callable[[], Awaitable[object]]) -> None:
        waiter = asyncio.ensure_future(
            host.next_event("media_mode", where=lambda d: d["mixing"] is value)
        )
        await change()
        assert (await waiter).data == {"mode": "auto", "mixing": value}

    listeners: list[PodiumClient] = []

    async def join_three() -> None:
        for i in range(3):
            listeners.append(await connect(f"l{i}", media=False))

    await mixing_becomes(True, join_three)  # 3 listeners: the threshold
    await mixing_becomes(False, listeners[0].leave)  # 2 < 80 % of 3: forward again
