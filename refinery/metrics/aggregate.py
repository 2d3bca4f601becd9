"""Means over seeds with their spread, and paired comparisons of two metrics over the same seeds.

A verdict from one seed cannot tell a method from seed noise (CIFAR-100 KD: about 0.4 points
between seeds; METHODS.md, Distillation). This module turns per-seed metric dicts (nested, like
data/reports/metrics.json) into per-metric summaries and paired verdicts.

- `summarize(values)`: n, mean, sample standard deviation (ddof=1) and a two-sided Student-t
  confidence interval for the mean, mean +- t_{(1+level)/2, n-1} * s / sqrt(n) (level 0.95 by
  default). The t interval assumes roughly normal per-seed values; with 3-5 seeds it is wide, as
  it should be.
- `compare_paired(a, b)`: the per-seed differences d_i = a_i - b_i (same seed, same split, same
  forget request), their mean, and a CI for it: the paired t interval (Student 1908; the paired
  t-test, `scipy.stats.ttest_rel`) by default, or the paired bootstrap percentile interval
  (Efron & Tibshirani 1993, ch. 13: resample seeds with replacement, keeping each seed's pair
  together; `scipy.stats.bootstrap`, method "percentile", seeded, so it is reproducible). The
  p-value is always the two-sided paired t-test's. Pairing removes the between-seed variance the
  two metrics share (a seed with an easy split lifts both), which an unpaired test would count
  as noise.
- Verdict: "<A> beats <B>" when the CI lies above 0 (below 0 when lower is better), "<B> beats
  <A>" when it lies on the other side, "no detectable difference (CI includes 0)" otherwise,
  and "one seed: no verdict" with fewer than two paired seeds (no CI, NaN p).

Non-finite values (a metric a seed could not compute) are left out: `n` counts what was used,
and a paired comparison uses only seeds where both metrics are finite.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
NO_VERDICT = "one seed: no verdict"
NO_DIFFERENCE = "no detectable difference (CI includes 0)"


@dataclass(frozen=True)
class Summary:
    """One metric over seeds. std, ci_low and ci_high are NaN when n < 2."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    level: float = LEVEL

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of metric `a` against metric `b` over the same seeds."""

    a: str
    b: str
    n: int
    mean_diff: float  # mean of a_i - b_i
    ci_low: float
    ci_high: float
    p_value: float    # two-sided paired t-test
    method: str       # "t" or "bootstrap": how the CI was made
    verdict: str
    level: float = LEVEL

    def to_dict(self) -> dict:
        return asdict(self)


def flatten(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as {"a.b.c": value}; bools, strings and lists are skipped."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            out[name] = float(value)
    return out


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Two-sided Student-t CI for the mean: mean +- t_{(1+level)/2, n-1} * s / sqrt(n), s with
    ddof=1. (NaN, NaN) for n < 2; a point interval when every value is the same."""
    x = _finite(values)
    if len(x) < 2:
        return math.nan, math.nan
    half = stats.t.ppf((1 + level) / 2, df=len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def summarize(values: Sequence[float], level: float = LEVEL) -> Summary:
    """n, mean, standard deviation (ddof=1) and Student-t CI of the finite values."""
    x = _finite(values)
    if len(x) == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, level)
    low, high = t_interval(x, level)
    std = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    return Summary(len(x), float(x.mean()), std, low, high, level)


def aggregate(per_seed: Sequence[Mapping] | Mapping[object, Mapping], level: float = LEVEL) -> dict[str, Summary]:
    """Summary per metric path ("unlearn.retrain.UA") over the seeds' nested metric dicts (a
    list, or a dict keyed by seed). A metric missing from some seeds is summarised over the
    seeds that have it."""
    runs = list(per_seed.values()) if isinstance(per_seed, Mapping) else list(per_seed)
    flat = [flatten(run) for run in runs]
    names = sorted({name for run in flat for name in run})
    return {name: summarize([run[name] for run in flat if name in run], level) for name in names}


def _bootstrap_interval(diffs: np.ndarray, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    if np.all(diffs == diffs[0]):
        return float(diffs[0]), float(diffs[0])
    res = stats.bootstrap((diffs,), np.mean, confidence_level=level, n_resamples=n_boot, method="percentile",
                          random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _paired_p(diffs: np.ndarray) -> float:
    """Two-sided paired t-test p-value on the differences (ttest_rel(a, b) == ttest_1samp(a - b, 0))."""
    if np.all(diffs == diffs[0]):
        return 1.0 if diffs[0] == 0 else 0.0
    return float(stats.ttest_1samp(diffs, 0.0).pvalue)


def verdict(name_a: str, name_b: str, ci_low: float, ci_high: float, n: int, higher_is_better: bool = True) -> str:
    """The reading of a CI on mean(a - b)."""
    if n < 2:
        return NO_VERDICT
    if ci_low <= 0.0 <= ci_high:
        return NO_DIFFERENCE
    a_larger = ci_low > 0.0
    return f"{name_a} beats {name_b}" if a_larger == higher_is_better else f"{name_b} beats {name_a}"


def compare_paired(a: Sequence[float], b: Sequence[float], names: tuple[str, str] = ("A", "B"), level: float = LEVEL,
                   method: str = "t", higher_is_better: bool = True, n_boot: int = 10_000, seed: int = 0) -> Comparison:
    """Paired comparison of a and b, entry i of each from the same seed. `method` "t": the paired
    t interval; "bootstrap": the percentile interval of `n_boot` seeded resamples of the seeds.
    Pairs with a non-finite member are dropped."""
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}")
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
        raise ValueError(f"paired values need equal 1-D shapes, got {a_arr.shape} and {b_arr.shape}")
    keep = np.isfinite(a_arr) & np.isfinite(b_arr)
    diffs = a_arr[keep] - b_arr[keep]
    n = len(diffs)
    if n < 2:
        mean = float(diffs.mean()) if n else math.nan
        return Comparison(names[0], names[1], n, mean, math.nan, math.nan, math.nan, method, NO_VERDICT, level)
    if method == "t":
        low, high = t_interval(diffs, level)
    else:
        low, high = _bootstrap_interval(diffs, level, n_boot, seed)
    return Comparison(names[0], names[1], n, float(diffs.mean()), low, high, _paired_p(diffs), method,
                      verdict(names[0], names[1], low, high, n, higher_is_better), level)


def compare_metrics(per_seed: Sequence[Mapping] | Mapping[object, Mapping], metric_a: str, metric_b: str,
                    **kwargs) -> Comparison:
    """`compare_paired` of two metric paths (e.g. "distill.student.test_acc" against
    "distill.scratch.test_acc") over the seeds that report both; names default to the paths."""
    runs = list(per_seed.values()) if isinstance(per_seed, Mapping) else list(per_seed)
    flat = [flatten(run) for run in runs]
    both = [run for run in flat if metric_a in run and metric_b in run]
    kwargs.setdefault("names", (metric_a, metric_b))
    return compare_paired([run[metric_a] for run in both], [run[metric_b] for run in both], **kwargs)
