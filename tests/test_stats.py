"""analysis/stats.py against independent computations on hand-made per-problem scores."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stats import (Interval, bootstrap_mean, hierarchical_bootstrap_diff, hierarchical_bootstrap_mean,
                            paired_bootstrap_diff)


def loop_paired(before, after, resamples, seed, level=0.95):
    """The paired percentile bootstrap written as a plain loop, one resample at a time."""
    rng = np.random.default_rng(seed)
    d = np.asarray(after, float) - np.asarray(before, float)
    stats = []
    for _ in range(resamples):
        idx = rng.integers(0, d.size, size=d.size)
        stats.append(d[idx].mean())
    return np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])


def loop_hierarchical(a, b, resamples, seed, level=0.95):
    """Two-stage bootstrap as a loop: problems drawn once per resample, then seeds per arm."""
    rng = np.random.default_rng(seed)
    p = a.shape[1]
    problems = [rng.integers(0, p, size=p) for _ in range(resamples)]
    seeds_a = [rng.integers(0, a.shape[0], size=a.shape[0]) for _ in range(resamples)]
    seeds_b = [rng.integers(0, b.shape[0], size=b.shape[0]) for _ in range(resamples)]
    stats = [b[sb][:, pr].mean() - a[sa][:, pr].mean() for pr, sa, sb in zip(problems, seeds_a, seeds_b)]
    return np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])


def test_known_zero_difference_is_not_distinguishable():
    rng = np.random.default_rng(1)
    before = rng.integers(0, 2, 200).astype(float)
    after = before[::-1].copy()  # the same scores, other problems: sum equal, so the true difference is 0
    ci = paired_bootstrap_diff(before, after, resamples=2000, seed=0)
    assert ci.estimate == pytest.approx(0.0, abs=1e-12)
    assert ci.low < 0 < ci.high
    assert ci.verdict() == "not distinguishable"
    same = paired_bootstrap_diff(before, before, resamples=500, seed=0)  # identical scores: a point at 0
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    assert same.verdict() == "not distinguishable"


def test_large_known_difference_is_a_gain_with_the_exact_estimate():
    before = np.array([0.0] * 150 + [1.0] * 50)  # 25% correct
    after = np.array([1.0] * 160 + [0.0] * 40)   # 80% correct
    ci = paired_bootstrap_diff(before, after, resamples=2000, seed=3)
    assert ci.estimate == pytest.approx(0.80 - 0.25)
    assert 0 < ci.low < ci.estimate < ci.high
    assert ci.verdict() == "gain"
    back = paired_bootstrap_diff(after, before, resamples=2000, seed=3)
    assert back.estimate == pytest.approx(-0.55)
    assert back.verdict() == "loss"
    assert (back.low, back.high) == pytest.approx((-ci.high, -ci.low))  # the same draws, mirrored


def test_percentile_interval_equals_a_direct_numpy_loop():
    rng = np.random.default_rng(7)
    before = rng.random(37)
    after = before + rng.normal(0.05, 0.2, 37)
    for resamples in (1, 999, 2500):  # one chunk, and across the 1000-resample chunks
        ci = paired_bootstrap_diff(before, after, resamples=resamples, seed=11, level=0.9)
        low, high = loop_paired(before, after, resamples, seed=11, level=0.9)
        assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)
        assert ci.level == 0.9


def test_bootstrap_mean_is_the_paired_interval_against_zero():
    x = np.array([1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 0.25])
    ci = bootstrap_mean(x, resamples=800, seed=2)
    low, high = loop_paired(np.zeros_like(x), x, 800, seed=2)
    assert ci.estimate == pytest.approx(x.mean())
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)


def test_hierarchical_with_one_seed_reduces_to_the_paired_bootstrap():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2, (1, 60)).astype(float)
    b = rng.integers(0, 2, (1, 60)).astype(float)
    h = hierarchical_bootstrap_diff(a, b, resamples=1500, seed=9)
    p = paired_bootstrap_diff(a[0], b[0], resamples=1500, seed=9)
    assert (h.estimate, h.low, h.high) == pytest.approx((p.estimate, p.low, p.high), abs=1e-12)
    m = hierarchical_bootstrap_mean(b, resamples=1500, seed=9)
    pm = bootstrap_mean(b[0], resamples=1500, seed=9)
    assert (m.estimate, m.low, m.high) == pytest.approx((pm.estimate, pm.low, pm.high), abs=1e-12)


def test_hierarchical_equals_a_direct_two_stage_loop():
    rng = np.random.default_rng(4)
    a = rng.random((3, 25))
    b = rng.random((4, 25)) + np.array([[0.0], [0.1], [0.2], [0.3]])  # seeds differ: the seed draw matters
    h = hierarchical_bootstrap_diff(a, b, resamples=1200, seed=1)
    low, high = loop_hierarchical(a, b, 1200, seed=1)
    assert h.estimate == pytest.approx(b.mean() - a.mean())
    assert (h.low, h.high) == pytest.approx((low, high), abs=1e-12)
    # seed-to-seed spread widens the interval over the paired one on the seed means
    flat = paired_bootstrap_diff(a.mean(axis=0), b.mean(axis=0), resamples=1200, seed=1)
    assert h.high - h.low > flat.high - flat.low


def test_hierarchical_mean_equals_a_direct_loop():
    rng = np.random.default_rng(8)
    a = rng.random((3, 20))
    m = hierarchical_bootstrap_mean(a, resamples=700, seed=6)
    gen = np.random.default_rng(6)
    problems = [gen.integers(0, 20, size=20) for _ in range(700)]
    seeds = [gen.integers(0, 3, size=3) for _ in range(700)]
    stats = [a[s][:, p].mean() for p, s in zip(problems, seeds)]
    assert m.estimate == pytest.approx(a.mean())
    assert (m.low, m.high) == pytest.approx(tuple(np.quantile(stats, [0.025, 0.975])), abs=1e-12)


def test_seeded_reproducibility_and_seed_dependence():
    rng = np.random.default_rng(0)
    before, after = rng.random(50), rng.random(50)
    one = paired_bootstrap_diff(before, after, resamples=1000, seed=42)
    assert one == paired_bootstrap_diff(before, after, resamples=1000, seed=42)
    assert one != paired_bootstrap_diff(before, after, resamples=1000, seed=43)
    a, b = rng.random((3, 50)), rng.random((3, 50))
    assert hierarchical_bootstrap_diff(a, b, resamples=300, seed=1) == hierarchical_bootstrap_diff(
        a, b, resamples=300, seed=1)


def test_verdict_and_text():
    assert Interval(0.05, 0.01, 0.09).verdict() == "gain"
    assert Interval(-0.05, -0.09, -0.01).verdict() == "loss"
    assert Interval(0.038, -0.030, 0.108).verdict() == "not distinguishable"
    assert Interval(0.0, 0.0, 0.02).verdict() == "not distinguishable"  # an end at 0 does not exclude 0
    assert Interval(0.038, -0.030, 0.108).text() == "(95% CI -3.0 to +10.8)"
    assert Interval(0.5, 0.41, 0.6, level=0.9).text(signed=False) == "(90% CI 41.0 to 60.0)"


@pytest.mark.parametrize("kwargs, match", [
    ({"before": [0.0, 1.0], "after": [1.0]}, "same problems"),
    ({"before": [], "after": []}, "non-empty"),
    ({"before": [0.0, np.nan], "after": [1.0, 1.0]}, "NaN"),
    ({"before": [0.0, 1.0], "after": [1.0, 1.0], "resamples": 0}, "resamples"),
    ({"before": [0.0, 1.0], "after": [1.0, 1.0], "level": 1.0}, "level"),
])
def test_bad_input_names_the_problem(kwargs, match):
    kwargs = {"resamples": 10, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_diff(**kwargs)


def test_hierarchical_rejects_misaligned_problems():
    with pytest.raises(ValueError, match="same problems"):
        hierarchical_bootstrap_diff(np.zeros((2, 5)), np.zeros((2, 6)), resamples=10, seed=0)
    with pytest.raises(ValueError, match=r"\(seeds, problems\)"):
        hierarchical_bootstrap_diff(np.zeros(5), np.zeros((2, 5)), resamples=10, seed=0)
