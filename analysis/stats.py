"""Bootstrap intervals for the differences the reports state: paired over problems, hierarchical over seeds.

    from analysis.stats import paired_bootstrap_diff
    ci = paired_bootstrap_diff(before, after, resamples=2000, seed=0)   # per-problem scores, same order
    ci.verdict()      # "gain" | "loss" | "not distinguishable"
    ci.text()         # "(95% CI -3.0 to +10.8)" in points (accuracy x 100)

The unit is the held-out problem: within one run, or between two runs evaluated on the same problems,
a problem's score before and after is one pair, and a resample draws P problems with replacement
(Efron & Tibshirani 1993, the paired bootstrap). Across replicate runs (seeds) the seeds are drawn with
replacement within each arm and, nested inside, one draw of problems shared by the arms (they were
evaluated on the same problems): the two-stage bootstrap of Davison & Hinkley 1997, Sec. 3.8.

Every interval is the percentile interval: the (1 - level)/2 and (1 + level)/2 quantiles of the
resampled statistic (numpy's default linear interpolation between order statistics). The point
estimate is the statistic on the data, not the mean of the resamples.

Draw order (so a test can replay it with the same numpy Generator): `np.random.default_rng(seed)`
first draws the problem indices, `integers(0, P, size=P)` for each resample in turn, then (hierarchical
only) the seed indices of arm a, `integers(0, S_a, size=S_a)` per resample, then those of arm b.
numpy only: no duckdb, no Prefect; the report, the sweep report and the experiment report share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "bootstrap_mean", "hierarchical_bootstrap_diff", "hierarchical_bootstrap_mean",
           "paired_bootstrap_diff"]

_CHUNK = 1000  # resamples drawn at once: bounds the (chunk, P) index and count arrays
VERDICTS = ("gain", "loss", "not distinguishable")


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided percentile interval, in the data's units (accuracy 0..1)."""

    estimate: float  # the statistic on the data (e.g. mean(after) - mean(before))
    low: float       # lower end of the two-sided interval
    high: float      # upper end
    level: float = 0.95

    def verdict(self) -> str:
        """"gain" when the whole interval lies above 0, "loss" when below, else "not distinguishable"."""
        if self.low > 0:
            return "gain"
        if self.high < 0:
            return "loss"
        return "not distinguishable"

    def excludes_zero(self) -> bool:
        return self.verdict() != "not distinguishable"

    def text(self, scale: float = 100.0, digits: int = 1, signed: bool = True) -> str:
        """'(95% CI a to b)' with both ends times `scale` (100: accuracy points), signed by default."""
        fmt = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
        return f"({self.level:.0%} CI {fmt.format(self.low * scale)} to {fmt.format(self.high * scale)})"


def _check(name: str, x: np.ndarray, ndim: int) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != ndim or arr.size == 0:
        shape = "(problems,)" if ndim == 1 else "(seeds, problems)"
        raise ValueError(f"{name}: expected a non-empty array of shape {shape}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: holds NaN or inf; drop or score those problems before bootstrapping")
    return arr


def _check_knobs(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples} (report.resamples)")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


def _problem_weights(rng: np.random.Generator, n_problems: int, resamples: int):
    """Yield (chunk, P) arrays: how often each problem was drawn in each resample, divided by P."""
    done = 0
    while done < resamples:
        m = min(_CHUNK, resamples - done)
        idx = rng.integers(0, n_problems, size=(m, n_problems))  # (m, P) problems drawn with replacement
        offsets = idx + n_problems * np.arange(m)[:, None]
        counts = np.bincount(offsets.ravel(), minlength=m * n_problems).reshape(m, n_problems)
        yield counts / n_problems
        done += m


def _percentile(estimate: float, stats: np.ndarray, level: float) -> Interval:
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(low), float(high), level)


def paired_bootstrap_diff(before: np.ndarray, after: np.ndarray, *, resamples: int, seed: int,
                          level: float = 0.95) -> Interval:
    """after.mean() - before.mean() over the same problems (arrays of per-problem scores, same order),
    percentile interval from resampling problems with replacement.

    Resample r draws problem indices i_1..i_P and gives (1/P) sum_j (after[i_j] - before[i_j]).
    """
    a = _check("before", before, 1)
    b = _check("after", after, 1)
    if a.shape != b.shape:
        raise ValueError(f"before and after must score the same problems: shapes {a.shape} and {b.shape}")
    _check_knobs(resamples, level)
    d = b - a  # (P,) per-problem differences
    rng = np.random.default_rng(seed)
    stats = np.concatenate([w @ d for w in _problem_weights(rng, d.size, resamples)])
    return _percentile(b.mean() - a.mean(), stats, level)


def bootstrap_mean(x: np.ndarray, *, resamples: int, seed: int, level: float = 0.95) -> Interval:
    """The mean of per-problem scores with its percentile interval over problems drawn with replacement."""
    return paired_bootstrap_diff(np.zeros_like(np.asarray(x, dtype=float)), x, resamples=resamples,
                                 seed=seed, level=level)


def _seed_means(rng: np.random.Generator, per_seed: np.ndarray) -> np.ndarray:
    """(m,) mean over seeds drawn with replacement, per resample, of per_seed (m, S) resampled-problem means."""
    m, s = per_seed.shape
    pick = rng.integers(0, s, size=(m, s))  # (m, S) seeds drawn with replacement
    return np.take_along_axis(per_seed, pick, axis=1).mean(axis=1)


def hierarchical_bootstrap_diff(a: np.ndarray, b: np.ndarray, *, resamples: int, seed: int,
                                level: float = 0.95) -> Interval:
    """mean over seeds and problems of b minus that of a; a has shape (seeds_a, problems), b (seeds_b,
    problems), the same held-out problems in the same column order. Each resample draws seeds with
    replacement within each arm and one shared draw of problems (the arms were evaluated on the same problems).

    With one seed per arm it is paired_bootstrap_diff(a[0], b[0]) with the same draws.
    """
    a = _check("a", a, 2)
    b = _check("b", b, 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must score the same problems: {a.shape[1]} and {b.shape[1]} columns")
    _check_knobs(resamples, level)
    rng = np.random.default_rng(seed)
    weights = list(_problem_weights(rng, a.shape[1], resamples))  # problems first (see the draw order)
    mean_a = np.concatenate([_seed_means(rng, w @ a.T) for w in weights])  # (R,)
    mean_b = np.concatenate([_seed_means(rng, w @ b.T) for w in weights])
    return _percentile(b.mean() - a.mean(), mean_b - mean_a, level)


def hierarchical_bootstrap_mean(a: np.ndarray, *, resamples: int, seed: int, level: float = 0.95) -> Interval:
    """The mean of a (seeds, problems) array with the same nested resampling."""
    a = _check("a", a, 2)
    _check_knobs(resamples, level)
    rng = np.random.default_rng(seed)
    weights = list(_problem_weights(rng, a.shape[1], resamples))
    stats = np.concatenate([_seed_means(rng, w @ a.T) for w in weights])
    return _percentile(a.mean(), stats, level)
