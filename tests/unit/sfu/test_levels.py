"""LevelDetector, SpeakingIndicators and the PCM fallback, on synthetic levels."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pytest

from sfu.levels import (
    SILENCE,
    LevelDetector,
    Levels,
    SpeakerChange,
    SpeakingIndicators,
    pcm_level,
)

FRAME = 0.02
TICK = 0.1


def feed(
    detector: LevelDetector,
    levels: Mapping[str, Callable[[int], int | None]],
    start: float,
    seconds: float,
) -> Levels:
    """Send every producer's level each 20 ms (None: no packet) and tick every 100 ms."""
    result = detector.tick(start)
    frames_per_tick = round(TICK / FRAME)
    for i in range(round(seconds / FRAME)):
        now = start + (i + 1) * FRAME
        for pid, level_at in levels.items():
            level = level_at(i)
            if level is not None:
                detector.add_level(pid, level, now)
        if (i + 1) % frames_per_tick == 0:
            result = detector.tick(now)
    return result


def constant(level: int | None) -> Callable[[int], int | None]:
    return lambda i: level


def detector_with(*producers: str) -> LevelDetector:
    detector = LevelDetector()
    for pid in producers:
        detector.add_producer(pid)
    return detector


def test_loud_beats_quiet() -> None:
    detector = detector_with("loud", "quiet")
    levels = feed(detector, {"loud": constant(20), "quiet": constant(50)}, 0.0, 2.0)
    loud, quiet = levels.producers["loud"], levels.producers["quiet"]
    assert loud.speaking and not quiet.speaking  # -50 dBov is below the -35 dBov bar
    assert loud.dbov == pytest.approx(-20.0, abs=0.01)
    assert quiet.dbov == pytest.approx(-50.0, abs=0.01)


def test_silence_is_not_speaking() -> None:
    detector = detector_with("mute")
    state = feed(detector, {"mute": constant(SILENCE)}, 0.0, 1.0).producers["mute"]
    assert (state.speaking, state.level, state.dbov) == (False, 0.0, -127.0)


def test_speaking_needs_forty_percent_of_the_window_loud() -> None:
    detector = detector_with("sparse", "dense")
    # 3 of every 10 frames loud, versus 5 of every 10.
    pattern = {
        "sparse": lambda i: 20 if i % 10 < 3 else 90,
        "dense": lambda i: 20 if i % 10 < 5 else 90,
    }
    levels = feed(detector, pattern, 0.0, 2.0)
    assert not levels.producers["sparse"].speaking
    assert levels.producers["dense"].speaking


def test_level_is_smoothed_and_quantised() -> None:
    detector = detector_with("a")
    levels = feed(detector, {"a": constant(10)}, 0.0, 3.0)
    # -10 dBov is an amplitude of 0.316; shown rounded up to 3/8.
    assert levels.producers["a"].level == 0.375
    first = feed(detector_with("b"), {"b": constant(10)}, 0.0, 0.4).producers["b"]
    assert 0.0 < first.level < 0.375  # still rising after one window


def test_a_producer_that_stops_sending_expires() -> None:
    detector = detector_with("gone", "stays")
    talking = feed(detector, {"gone": constant(20), "stays": constant(20)}, 0.0, 1.0)
    assert talking.producers["gone"].speaking
    # "gone" sends nothing more: its missing frames are silence.
    later = feed(detector, {"gone": constant(None), "stays": constant(20)}, 1.0, 0.6)
    assert not later.producers["gone"].speaking
    assert later.producers["gone"].dbov == -127.0
    assert later.producers["stays"].speaking


def test_tick_is_rate_limited_and_unknown_producers_are_ignored() -> None:
    detector = detector_with("a")
    first = detector.tick(0.0)
    detector.add_level("stranger", 0, 0.01)
    assert detector.tick(0.05) is first
    assert detector.tick(0.2) is not first
    assert set(detector.tick(0.4).producers) == {"a"}


def test_removed_producer_leaves_the_result() -> None:
    detector = detector_with("a", "b")
    feed(detector, {"a": constant(20), "b": constant(20)}, 0.0, 1.0)
    detector.remove_producer("a")
    levels = feed(detector, {"b": constant(20)}, 1.0, 0.4)
    assert set(levels.producers) == {"b"}
    assert levels.producers["b"].speaking
    assert detector.producers == ("b",)


def test_indicators_report_only_changes() -> None:
    detector = detector_with("a", "b")
    indicators = SpeakingIndicators()
    both = feed(detector, {"a": constant(20), "b": constant(90)}, 0.0, 2.0)
    assert indicators.update(both) == [SpeakerChange("a", both.producers["a"].level, True)]
    assert indicators.update(both) == []
    steady = feed(detector, {"a": constant(20), "b": constant(90)}, 2.0, 0.4)
    assert indicators.update(steady) == []
    quiet = feed(detector, {"a": constant(90), "b": constant(90)}, 2.4, 1.0)
    assert indicators.update(quiet) == [SpeakerChange("a", 0.0, False)]


def test_indicators_report_a_speaker_who_left() -> None:
    detector = detector_with("a")
    indicators = SpeakingIndicators()
    indicators.update(feed(detector, {"a": constant(20)}, 0.0, 1.0))
    detector.remove_producer("a")
    assert indicators.update(detector.tick(1.2)) == [SpeakerChange("a", 0.0, False)]
    assert indicators.update(detector.tick(1.4)) == []


def sine(amplitude: float, n: int = 960, rate: int = 48_000) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * 440 * np.arange(n) / rate)


@pytest.mark.parametrize("amplitude", [0.9, 0.25, 0.01])
def test_pcm_level_matches_the_rms_of_a_sine(amplitude: float) -> None:
    true_dbov = 20 * math.log10(amplitude / math.sqrt(2))
    assert -pcm_level(sine(amplitude).astype(np.float32)) == pytest.approx(true_dbov, abs=0.5)
    as_int16 = np.round(sine(amplitude) * 32767).astype(np.int16)
    assert -pcm_level(as_int16) == pytest.approx(true_dbov, abs=0.5)


def test_pcm_level_of_silence() -> None:
    assert pcm_level(np.zeros(960, dtype=np.int16)) == SILENCE
    assert pcm_level(np.zeros(0, dtype=np.float32)) == SILENCE


def test_pcm_fallback_feeds_the_detector() -> None:
    detector = detector_with("no-extension")
    frame = sine(0.25).astype(np.float32)
    for i in range(100):
        detector.add_pcm("no-extension", frame, i * FRAME)
        if i % 5 == 4:
            levels = detector.tick(i * FRAME)
    state = levels.producers["no-extension"]
    assert state.dbov == pytest.approx(20 * math.log10(0.25 / math.sqrt(2)), abs=1.0)
    assert state.speaking
