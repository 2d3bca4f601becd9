"""Aggregation over seeds: summaries and paired verdicts against numbers computed by hand.

Hand computations (t quantiles from a t table: t_{0.975,2} = 4.302653, t_{0.975,3} = 3.182446):
- [0.90, 0.92, 0.94]: mean 0.92; deviations -0.02, 0, 0.02, so s^2 = 0.0008 / 2 and s = 0.02
  (ddof=0 would give 0.01633); half-width 4.302653 * 0.02 / sqrt(3) = 0.0496828.
- Paired: A = [0.90, 0.92, 0.94, 0.91], B = [0.88, 0.91, 0.915, 0.895]; d = A - B =
  [0.02, 0.01, 0.025, 0.015], mean 0.0175; deviations 0.0025, -0.0075, 0.0075, -0.0025, sum of
  squares 1.25e-4, s_d = sqrt(1.25e-4 / 3) = 0.0064550, se = 0.0032275, t = 5.4222 (p = 0.0123,
  df 3); half-width 3.182446 * 0.0032275 = 0.0102713. Unpaired (Welch), the same data give
  t = 1.50, p = 0.18: the between-seed spread hides the difference the pairing reveals.
"""
import itertools
import math

import numpy as np
import pytest

from refinery.metrics.aggregate import (NO_DIFFERENCE, NO_VERDICT, aggregate, compare_metrics, compare_paired,
                                        flatten, summarize)

A = [0.90, 0.92, 0.94, 0.91]
B = [0.88, 0.91, 0.915, 0.895]


def test_summary_mean_std_and_t_interval_by_hand():
    s = summarize([0.90, 0.92, 0.94])
    assert s.n == 3
    assert s.mean == pytest.approx(0.92, abs=1e-12)
    assert s.std == pytest.approx(0.02, abs=1e-12)            # ddof=1
    assert s.ci_low == pytest.approx(0.92 - 0.0496828, abs=1e-6)  # Student t, not the normal 1.96
    assert s.ci_high == pytest.approx(0.92 + 0.0496828, abs=1e-6)


def test_summary_of_one_value_has_no_spread_and_nan_is_left_out():
    s = summarize([0.8, math.nan])
    assert (s.n, s.mean) == (1, 0.8)
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_aggregate_nested_per_seed_dicts():
    seeds = {0: {"teacher": {"test_acc": 0.90, "name": "cct", "ok": True}, "cost": {"params": 10}},
             1: {"teacher": {"test_acc": 0.92}, "cost": {"params": 10}},
             2: {"teacher": {"test_acc": 0.94}, "cost": {"params": 10, "loads": [1, 2]}}}
    out = aggregate(seeds)
    assert set(out) == {"teacher.test_acc", "cost.params"}  # strings, bools and lists are not metrics
    assert out["teacher.test_acc"].std == pytest.approx(0.02, abs=1e-12)
    assert out["cost.params"].to_dict()["ci_low"] == pytest.approx(10.0)  # no spread: a point interval
    assert flatten({"a": {"b": 1, "c": {"d": 2.5}}}) == {"a.b": 1.0, "a.c.d": 2.5}


def test_paired_t_comparison_by_hand():
    c = compare_paired(A, B, names=("KD", "scratch"))
    assert c.n == 4 and c.method == "t"
    assert c.mean_diff == pytest.approx(0.0175, abs=1e-12)
    assert c.ci_low == pytest.approx(0.0175 - 0.0102713, abs=1e-6)
    assert c.ci_high == pytest.approx(0.0175 + 0.0102713, abs=1e-6)
    assert c.p_value == pytest.approx(0.0123, abs=5e-4)
    assert c.verdict == "KD beats scratch"  # an unpaired test would find no difference here


def test_paired_verdict_directions():
    assert compare_paired(B, A, names=("KD", "scratch")).verdict == "scratch beats KD"
    # lower is better (e.g. an Avg.Gap): A's larger values lose
    assert compare_paired(A, B, names=("FT", "SalUn"), higher_is_better=False).verdict == "SalUn beats FT"
    noisy = compare_paired([0.90, 0.92, 0.94], [0.91, 0.90, 0.95])
    assert noisy.ci_low < 0 < noisy.ci_high and noisy.verdict == NO_DIFFERENCE


def test_one_seed_gives_no_verdict():
    c = compare_paired([0.9], [0.8])
    assert c.n == 1 and c.verdict == NO_VERDICT and c.mean_diff == pytest.approx(0.1)
    assert math.isnan(c.ci_low) and math.isnan(c.p_value)
    assert compare_paired([0.9, math.nan], [0.8, 0.7]).verdict == NO_VERDICT  # the NaN pair is dropped


def exact_bootstrap_percentiles(diffs, level=0.95):
    """Every one of the n^n equally likely resamples of the seeds, enumerated."""
    means = [np.mean(pick) for pick in itertools.product(diffs, repeat=len(diffs))]
    return np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])


def test_paired_bootstrap_matches_exact_enumeration_and_is_seeded():
    c = compare_paired(A, B, method="bootstrap", seed=0)
    low, high = exact_bootstrap_percentiles(np.subtract(A, B))  # 0.0125, 0.0225
    step = 0.01 / 4 / 2  # the resampled means lie on a grid of 0.00125
    assert c.ci_low == pytest.approx(low, abs=step) and c.ci_high == pytest.approx(high, abs=step)
    assert c.verdict == "A beats B"
    again = compare_paired(A, B, method="bootstrap", seed=0)
    assert (again.ci_low, again.ci_high) == (c.ci_low, c.ci_high)


def test_compare_metrics_pairs_by_seed():
    seeds = [{"distill": {"student": {"acc": a}, "scratch": {"acc": b}}} for a, b in zip(A, B)]
    seeds.append({"distill": {"student": {"acc": 0.5}}})  # a seed without the scratch control: not paired
    c = compare_metrics(seeds, "distill.student.acc", "distill.scratch.acc")
    assert c.n == 4 and c.mean_diff == pytest.approx(0.0175)
    assert c.verdict == "distill.student.acc beats distill.scratch.acc"
    with pytest.raises(ValueError, match="method"):
        compare_paired(A, B, method="welch")
