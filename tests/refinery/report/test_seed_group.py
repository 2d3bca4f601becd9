"""A seed group's metrics, verdicts and KLoM on a synthetic group whose answers are known by hand.

Four seeds. KD: student = [0.90, 0.92, 0.94, 0.91], scratch = [0.88, 0.91, 0.915, 0.895]
(tests/refinery/metrics/test_aggregate.py: paired mean 0.0175, half-width 0.0102713, p 0.0123),
so the student beats scratch. MoE vs the dense teacher at equal steps: identical except seed 3
(+0.01), so the CI holds 0. Unlearning gaps: ssd [1, 2, 3, 4], finetune [3, 4, 5, 6]: ssd is
lower by exactly 2 every seed (a point CI, lower is better: ssd beats finetune).
"""
import math

import numpy as np
import pandas as pd
import pytest

from refinery.metrics.aggregate import NO_DIFFERENCE
from refinery.report import render_markdown
from refinery.report.seed_group import (build_group_report, group_metrics, group_results, klom_group,
                                        percentile_ci)

STUDENT = [0.90, 0.92, 0.94, 0.91]
SCRATCH = [0.88, 0.91, 0.915, 0.895]


def member(i: int) -> dict:
    gaps = {"original": 10.0 + i, "retrain": 0.0, "ssd": 1.0 + i, "finetune": 3.0 + i}
    return {"teacher": {"test_acc": 0.95},
            "upcycle": {"test_acc": 0.96 + (0.01 if i == 3 else 0.0)},
            "distill": {"student": {"test_acc": STUDENT[i]}, "scratch": {"test_acc": SCRATCH[i]}},
            "quality": {"dense_continued": {"test_acc": 0.96}, "student": {"test_acc": STUDENT[i], "nll": 0.3,
                                                                           "ece": 0.02}},
            "unlearn": {m: {"UA": 5.0, "RA": 99.0, "TA": 95.0, "MIA": 10.0, "gap": g} for m, g in gaps.items()}}


GROUP = {seed: member(i) for i, seed in enumerate((0, 1, 2, 7))}


def test_group_metrics_carry_means_cis_and_paired_comparisons():
    results = group_results(GROUP, {s: {} for s in GROUP}, {})
    metrics = group_metrics(results)
    student = metrics["distill"]["student"]["test_acc"]
    assert student["n"] == 4 and student["mean"] == pytest.approx(0.9175)
    kd = metrics["compare"]["kd_vs_scratch"]
    assert kd["mean_diff"] == pytest.approx(0.0175)
    assert kd["ci_low"] == pytest.approx(0.0175 - 0.0102713, abs=1e-6)
    assert kd["p_value"] == pytest.approx(0.0123, abs=5e-4)
    verdicts = {key: c.verdict for key, (_, c) in results["comparisons"].items()}
    assert verdicts["kd_vs_scratch"] == "distill.student.test_acc beats distill.scratch.test_acc"
    assert verdicts["moe_vs_dense_equal_steps"] == NO_DIFFERENCE
    assert verdicts["unlearn_ssd_vs_finetune"] == "unlearn.ssd.gap beats unlearn.finetune.gap"  # lower gap wins
    assert verdicts["unlearn_ssd_vs_original"] == "unlearn.ssd.gap beats unlearn.original.gap"
    assert "unlearn_retrain_vs_original" not in verdicts  # retrain is the reference, not a method


def test_group_report_states_every_verdict():
    results = group_results(GROUP, {s: {} for s in GROUP}, {})
    text = render_markdown(build_group_report(results, list(GROUP), {"pipeline": "synthetic", "data_seed": 0}))
    assert "4 seeds" in text and "paired t-test" in text
    assert "+1.75" in text  # KD - scratch in points
    assert NO_DIFFERENCE in text


def margin_table(values: dict[tuple[str, str], list[float]], ids: list[int]) -> pd.DataFrame:
    rows = [{"model": m, "split": sp, "sample_id": i, "margin": v}
            for (m, sp), vs in values.items() for i, v in zip(ids, vs)]
    return pd.DataFrame(rows)


def test_klom_group_aligns_samples_by_id_across_seeds():
    """Retrain and `same` have equal margins per sample on every seed (KLoM 0); `far` sits 50
    apart on forget samples. Seed 1 lists its samples in another order: alignment is by id."""
    rng = np.random.default_rng(0)
    tables = {}
    for seed in range(5):
        base = rng.normal(size=6)
        values = {("retrain", "forget"): base, ("same", "forget"): base, ("far", "forget"): base + 50.0}
        ids = [10, 11, 12, 13, 14, 15]
        table = margin_table(values, ids)
        tables[seed] = table.sample(frac=1.0, random_state=seed) if seed == 1 else table
    out = klom_group(tables)
    assert set(out) == {"same", "far"}
    assert out["same"]["forget"]["p95"] == pytest.approx(0.0, abs=1e-12)
    assert out["far"]["forget"]["p95"] > 5.0
    assert out["far"]["forget"]["n_models"] == 5 and out["far"]["forget"]["n_samples"] == 6


def test_percentile_ci_brackets_the_percentile():
    values = np.arange(1000, dtype=float)
    p95, low, high = percentile_ci(values)
    assert p95 == pytest.approx(949.05)
    assert low < p95 < high and high - low < 40
    assert not math.isnan(low)
