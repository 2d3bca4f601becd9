"""Accuracy, NLL and ECE against hand computations; ECE's defining properties (Guo et al. 2017)."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from refinery.metrics.classification import accuracy, ece, nll, reliability_table


def two_class_logits(confidences: list[float]) -> torch.Tensor:
    """Logits whose softmax is (c, 1 - c) per row, so class 0 is predicted with confidence c."""
    c = torch.tensor(confidences, dtype=torch.float64)
    return torch.stack([c.log(), (1 - c).log()], dim=1)


def test_accuracy_matches_hand_count():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 2, 2])  # last one wrong
    assert accuracy(logits, y) == 0.75


def test_nll_matches_hand_computation():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]], dtype=torch.float64)  # softmax (3/4, 1/4) and (1/2, 1/2)
    y = torch.tensor([1, 0])
    expected = (-math.log(0.25) - math.log(0.5)) / 2
    assert nll(logits, y) == pytest.approx(expected, abs=1e-12)


def test_nll_of_uniform_prediction_is_log_classes():
    assert nll(torch.zeros(7, 10), torch.arange(7)) == pytest.approx(math.log(10), abs=1e-12)


def test_ece_is_zero_when_confidence_equals_accuracy_in_every_bin():
    # Three bins: confidence 0.8 with 8/10 right, 0.6 with 3/5 right, 0.95 with 19/20 right.
    conf = [0.8] * 10 + [0.6] * 5 + [0.95] * 20
    y = [0] * 8 + [1] * 2 + [0] * 3 + [1] * 2 + [0] * 19 + [1]
    assert ece(two_class_logits(conf), torch.tensor(y)) == pytest.approx(0.0, abs=1e-12)


def test_ece_matches_hand_computed_tiny_example():
    # conf 0.9 (bin (13/15, 14/15]) right and wrong, conf 0.7 (bin (10/15, 11/15]) right.
    logits, y = two_class_logits([0.9, 0.9, 0.7]), torch.tensor([0, 1, 0])
    by_hand = 2 / 3 * abs(0.5 - 0.9) + 1 / 3 * abs(1.0 - 0.7)
    assert ece(logits, y) == pytest.approx(by_hand, abs=1e-12)
    # One bin pools everything: |mean acc - mean conf| = |2/3 - 2.5/3|; binning matters.
    assert ece(logits, y, bins=1) == pytest.approx(0.5 / 3, abs=1e-12)


def test_ece_uses_top_label_confidence_and_fully_confident_errors():
    # Confidence 1.0 lands in the last bin; half of such predictions wrong gives ECE 0.5.
    logits = torch.tensor([[100.0, 0.0], [100.0, 0.0], [0.0, 100.0], [0.0, 100.0]])
    y = torch.tensor([0, 1, 1, 0])
    assert ece(logits, y) == pytest.approx(0.5, abs=1e-12)


def test_reliability_table_rows_and_consistency_with_ece():
    torch.manual_seed(0)
    logits, y = torch.randn(500, 5) * 2, torch.randint(0, 5, (500,))
    table = reliability_table(logits, y, bins=10)
    assert len(table) == 10
    assert sum(row["count"] for row in table) == 500
    assert table[0]["lo"] == 0.0 and table[-1]["hi"] == 1.0
    for row in table:
        if row["count"]:
            assert row["lo"] < row["confidence"] <= row["hi"]
            assert 0.0 <= row["accuracy"] <= 1.0
        else:
            assert row["confidence"] is None and row["accuracy"] is None
    weighted = sum(r["count"] / 500 * abs(r["accuracy"] - r["confidence"]) for r in table if r["count"])
    assert ece(logits, y, bins=10) == pytest.approx(weighted, abs=1e-12)


def test_reliability_table_hand_example():
    table = reliability_table(two_class_logits([0.9, 0.9, 0.7]), torch.tensor([0, 1, 0]), bins=15)
    populated = {i: row for i, row in enumerate(table) if row["count"]}
    assert sorted(populated) == [10, 13]
    assert populated[13]["count"] == 2 and populated[13]["accuracy"] == 0.5
    assert populated[13]["confidence"] == pytest.approx(0.9, abs=1e-12)
    assert populated[10]["count"] == 1 and populated[10]["accuracy"] == 1.0


def test_shape_errors_and_empty_sets_are_rejected():
    with pytest.raises(ValueError):
        accuracy(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        ece(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def test_metrics_package_imports_neither_prefect_nor_dvc():
    code = "import sys, refinery.metrics; bad = [m for m in ('prefect', 'dvc') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
