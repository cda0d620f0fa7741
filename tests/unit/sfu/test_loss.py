"""The loss-feedback policy: a high percentile of listeners' loss, bounded."""

from __future__ import annotations

from sfu.loss import MAX_REPORTED_LOSS, audience_loss, fraction_lost_byte


def test_a_high_percentile_of_the_audience_not_its_worst_listener() -> None:
    losses = [0.0] * 85 + [0.05] * 10 + [0.5] * 5  # 5 % of listeners on terrible links
    assert audience_loss(losses) == 0.05
    assert audience_loss([0.03]) == 0.03
    assert audience_loss([]) == 0.0


def test_reported_loss_is_capped_and_never_below_the_uplinks_own() -> None:
    assert audience_loss([0.9] * 10) == MAX_REPORTED_LOSS
    assert fraction_lost_byte(own=0, audience=0.05) == 13
    assert fraction_lost_byte(own=40, audience=0.05) == 40
    assert fraction_lost_byte(own=0, audience=1.0) == 255
