"""The impairment relay's loss model and bounds (its forwarding is exercised in test_red_e2e)."""

from __future__ import annotations

import random

import pytest

from benchmarks.impairment_relay import Direction, Impairment


@pytest.mark.parametrize(("loss", "burst"), [(0.05, 1.0), (0.1, 3.0)])
def test_loss_rate_and_burst_length_are_what_was_asked(loss: float, burst: float) -> None:
    way = Direction(Impairment(loss=loss, burst=burst), random.Random(7))
    drops = [way.lose() for _ in range(200_000)]
    runs = sum(1 for a, b in zip([False, *drops], drops, strict=False) if b and not a)
    assert abs(sum(drops) / len(drops) - loss) < 0.1 * loss
    assert abs(sum(drops) / runs - burst) < 0.1 * burst


def test_jitter_delays_but_never_reorders() -> None:
    way = Direction(Impairment(delay=0.04, jitter=0.01), random.Random(1))
    due = [way.due(i * 0.001) for i in range(1000)]
    assert due == sorted(due) and all(0.04 <= d - i * 0.001 <= 0.05 for i, d in enumerate(due))


@pytest.mark.parametrize(
    "bad", [{"loss": 0.6}, {"burst": 0.5}, {"delay": 0.9, "jitter": 0.2}, {"jitter": -0.1}]
)
def test_impairments_are_bounded(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Impairment(**bad)
