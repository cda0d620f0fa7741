"""Mixing, sans-I/O: the limiter, mix-minus, no wrap-around; which mixes exist and are encoded."""

from __future__ import annotations

import numpy as np
import pytest

from sfu.mix import Limiter, Pcm, mix, mix_minus, to_int16
from sfu.mixer import MIX, Mixdown, Mixer, MixOutput, MixRound, minus_source
from sfu.rtp import FRAME_SAMPLES
from sfu.slots import Ranking

RATE = 48_000


def tone(frequency: float, amplitude: float, seconds: float = 1.0) -> Pcm:
    t = np.arange(int(RATE * seconds)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def frames(samples: Pcm) -> list[Pcm]:
    return [
        samples[i : i + FRAME_SAMPLES]
        for i in range(0, len(samples) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
    ]


def splatter_db(samples: Pcm, tones: tuple[float, ...]) -> float:
    """Energy outside ±30 Hz of ``tones``, relative to the energy inside."""
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    band = np.zeros(len(freqs), dtype=bool)
    for f in tones:
        band |= np.abs(freqs - f) < 30
    return float(10 * np.log10(spectrum[~band].sum() / spectrum[band].sum()))


def limited(voices: list[Pcm]) -> Pcm:
    limiter = Limiter()
    out = [
        limiter.process(mix(list(chunk), FRAME_SAMPLES))
        for chunk in zip(*map(frames, voices), strict=True)
    ]
    return np.concatenate(out)


def test_loud_overlapping_voices_never_exceed_full_scale_nor_splatter() -> None:
    a, b = tone(300, 0.9), tone(500, 0.9)  # their sum peaks near 1.8
    out = limited([a, b])
    assert float(np.max(np.abs(out))) <= 1.0
    pcm = to_int16(out).astype(np.float32) / 32767
    assert splatter_db(pcm, (300, 500)) < -60  # type: ignore[arg-type]
    # What the limiter prevents: wrapped int16 and hard clipping both splatter.
    wrapped = ((a + b) * 32767).astype(np.int64).astype(np.int16).astype(np.float32) / 32767
    assert splatter_db(wrapped, (300, 500)) > 0  # type: ignore[arg-type]
    assert splatter_db(np.clip(a + b, -1, 1), (300, 500)) > -20


def test_to_int16_saturates() -> None:
    samples = np.array([2.0, -2.0, 0.5, -1.0], dtype=np.float32)
    assert to_int16(samples).tolist() == [32767, -32767, 16384, -32767]


def test_quiet_mixes_pass_untouched() -> None:
    a, b = tone(300, 0.2), tone(500, 0.3)
    assert np.array_equal(limited([a, b]), a + b)


def test_limiter_recovers_after_a_loud_burst() -> None:
    limiter = Limiter()
    for chunk in frames(tone(400, 1.8, 0.2)):
        limiter.process(chunk.copy())
    assert limiter.gain < 0.5
    for chunk in frames(tone(400, 0.3, 0.6)):
        limiter.process(chunk.copy())
    assert limiter.gain > 0.99


def test_mix_minus_removes_exactly_one_voice() -> None:
    a, b, c = tone(300, 0.3, 0.02), tone(500, 0.3, 0.02), tone(700, 0.3, 0.02)
    total = mix([a, b, c], FRAME_SAMPLES)
    without_a = mix_minus(total, a)
    np.testing.assert_allclose(without_a, b + c, atol=1e-6)
    assert mix_minus(total, None) is not total  # each mix gets its own array to limit


# -- the mixer's decisions ------------------------------------------------------
def test_the_head_of_the_ranking_is_mixed_and_keeps_its_place() -> None:
    mixer = Mixer(speakers=2)
    mixer.select(Ranking(("a", "b", "c")))
    assert mixer.mixed == ("a", "b")
    mixer.select(Ranking(("c", "b", "a")))  # c is louder now: it replaces a, b stays put
    assert mixer.mixed == ("c", "b")
    mixer.select(Ranking(("b", "d"), keep_only=frozenset({"d"})))  # d may not take a place
    assert mixer.mixed == ("b",)  # type: ignore[comparison-overlap]


def test_layouts_give_mixed_speakers_their_mix_minus_and_everyone_else_the_mix() -> None:
    mixer = Mixer(speakers=2)
    mixer.select(Ranking(("a", "b", "c")))
    assert mixer.layout("a", 3) == (minus_source("a"), None, None)
    assert mixer.layout("c", 3) == (MIX, None, None)  # on stage, not mixed: the full mix
    assert mixer.layout("listener", 2) == (MIX, None)


def test_outputs_follow_routing_and_recording() -> None:
    mixer = Mixer(speakers=2)
    mixer.select(Ranking(("a", "b")))
    assert mixer.tick(0.0).outputs == ()
    mixer.recording = True
    assert mixer.tick(0.02).outputs == (MixOutput(MIX, None, continuous=True),)
    mixer.routed, mixer.recording = True, False
    assert [o.source for o in mixer.tick(0.04).outputs] == [MIX, "mix-minus:a", "mix-minus:b"]


def test_only_mixed_speakers_are_decoded() -> None:
    mixer = Mixer(speakers=1, delay=0.0)
    mixer.select(Ranking(("a",)))
    mixer.routed = True
    for pid in ("a", "b"):
        mixer.push(pid, 1, 960, bytes([31 << 3]) + b"opus", 0.0)
    inputs = mixer.tick(0.0).inputs
    assert [pid for pid, _ in inputs] == ["a"]
    assert mixer.buffers["b"].stats["played"] == 1  # b's audio was consumed all the same


def round_of(tick: int, mixed: tuple[str, ...], recording: bool = False) -> MixRound:
    outputs = (MixOutput(MIX, None, recording), *(MixOutput(minus_source(p), p) for p in mixed))
    return MixRound(tick, (), outputs)


def test_one_encode_per_distinct_mix() -> None:
    down = Mixdown()
    mixed = ("a", "b", "c")
    voice = tone(440, 0.3, 0.02)
    # Only a talks: everyone but a hears the full mix; a's mix-minus is silent: not sent.
    rendered = down.render(round_of(1, mixed), {"a": voice, "b": None, "c": None})
    assert set(rendered.frames) == {MIX}
    assert rendered.aliases == {"mix-minus:b": MIX, "mix-minus:c": MIX}
    # a and b talk: three distinct mixes (all, all but a, all but b); c's is the full mix.
    rendered = down.render(round_of(2, mixed), {"a": voice, "b": voice, "c": None})
    assert set(rendered.frames) == {MIX, "mix-minus:a", "mix-minus:b"}
    assert rendered.aliases == {"mix-minus:c": MIX}
    assert np.array_equal(rendered.frames["mix-minus:a"].pcm, to_int16(voice))
    assert rendered.frames[MIX].level < rendered.frames["mix-minus:a"].level  # louder


@pytest.mark.parametrize("recording", [False, True])
def test_silent_mixes_stop_after_a_tail_unless_recorded(recording: bool) -> None:
    down = Mixdown(tail=3)
    voice = tone(440, 0.3, 0.02)
    down.render(round_of(1, ("a",), recording), {"a": voice})
    sent = [
        bool(down.render(round_of(tick, ("a",), recording), {"a": None}).frames)
        for tick in range(2, 8)
    ]
    assert sent == ([True] * 6 if recording else [True, True, True, False, False, False])
