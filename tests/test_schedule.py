"""Learning-rate multipliers: warmup ramp, then constant, cosine or linear decay to 0."""

from __future__ import annotations

import pytest

from grpo_core.training.schedule import lr_multiplier


def test_warmup_ramps_linearly_to_the_peak():
    f = lr_multiplier("cosine", warmup_steps=4, total_updates=14)
    assert [f(u) for u in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)  # the first update after warmup runs at the peak


@pytest.mark.parametrize(("schedule", "at_7", "at_9", "end"), [
    ("constant", 1.0, 1.0, 1.0),
    ("cosine", 0.5, 0.2061073738537635, 0.0),  # 0.5 * (1 + cos(0.7 pi)) at 7 of the 10 post-warmup updates
    ("linear", 0.5, 0.3, 0.0),
])
def test_decay_after_warmup(schedule, at_7, at_9, end):
    f = lr_multiplier(schedule, warmup_steps=2, total_updates=12)
    assert (f(7), f(9)) == pytest.approx((at_7, at_9))
    assert f(12) == pytest.approx(end) and f(100) == pytest.approx(end)  # clamped past the end


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="'constant', 'cosine' or 'linear'"):
        lr_multiplier("step", 0, 10)  # type: ignore[arg-type]


def test_decay_stops_at_the_floor():
    """Bootstrap SFT's schedule: cosine from the peak down to `floor` (warmup is not floored)."""
    f = lr_multiplier("cosine", warmup_steps=2, total_updates=12, floor=0.1)
    assert (f(0), f(2), f(7), f(12)) == pytest.approx((0.5, 1.0, 0.55, 0.1))
    assert lr_multiplier("linear", 2, 12, floor=0.1)(7) == pytest.approx(0.55)
