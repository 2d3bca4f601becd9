"""KLoM: margins, per-sample binned KL of unlearned against retrained margins, and its P95.

Hand case (bins=2): unlearned margins [0, 1, 2, 3], retrained [0, 0, 1, 4]. Shared range [0, 4],
edges [0, 2, 4]. Unlearned counts [2, 2] -> p = [0.5, 0.5]. Retrained: 0, 0, 1 in bin 0, and 4 sits
on the top edge, which the reference's np.digitize counting leaves out -> q = [1, 0], floored to
[1, 1e-5] where p > 0. KL(p || q) = 0.5 ln(0.5) + 0.5 ln(0.5 / 1e-5) = 5.0633154.
With the top bin closed (top_edge="include"): q = [0.75, 0.25], KL = 0.5 ln(2/3) + 0.5 ln 2 = 0.1438410.
Reversed arguments: KL(q || p) = 1 * ln(1 / 0.5) = 0.6931472 (p = [1, 0] over [0.5, 0.5]).
"""
import math

import numpy as np
import pytest
import torch

from refinery.metrics.klom import klom, klom_summary, margins

HAND_U = np.array([[0.0], [1.0], [2.0], [3.0]])
HAND_R = np.array([[0.0], [0.0], [1.0], [4.0]])


def test_margin_by_hand_and_as_log_odds():
    # 2 - ln(e^1 + e^0) = 2 - 1.3132617
    assert margins(np.array([[2.0, 1.0, 0.0]]), np.array([0]))[0] == pytest.approx(0.6867383, abs=1e-7)
    logits = torch.randn(3, 50, 10, generator=torch.Generator().manual_seed(0))  # (models, n, C)
    y = torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(1))
    m = margins(logits, y)
    p = torch.softmax(logits.double(), -1).gather(-1, y.expand(3, 50)[..., None])[..., 0].numpy()
    assert m.shape == (3, 50)
    np.testing.assert_allclose(m, np.log(p) - np.log1p(-p), atol=1e-9)  # margin = logit of p_c


def test_identical_distributions_give_zero():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(8, 100)) * 5
    assert np.abs(klom(same, same)).max() == pytest.approx(0.0, abs=1e-12)
    # independent draws from one distribution: only the estimator's small-sample noise
    a, b = rng.normal(size=(2000, 50)), rng.normal(size=(2000, 50))
    assert klom(a, b).max() < 0.05


def test_shifted_distributions_give_a_large_value():
    rng = np.random.default_rng(0)
    retrained = rng.normal(size=(20, 30))
    unlearned = retrained + 8.0  # disjoint supports: every p-bin sees only the 1e-5 floor
    assert klom(unlearned, retrained).min() > 5.0
    slight = klom(retrained + 0.5, retrained)
    assert 0 < np.median(slight) < np.median(klom(unlearned, retrained))


def test_hand_computed_small_case():
    assert klom(HAND_U, HAND_R, bins=2)[0] == pytest.approx(5.0633154, abs=1e-6)
    assert klom(HAND_U, HAND_R, bins=2, top_edge="include")[0] == pytest.approx(0.1438410, abs=1e-6)
    renormalized = klom(HAND_U, HAND_R, bins=2, renormalize_q=True)[0] - klom(HAND_U, HAND_R, bins=2)[0]
    assert renormalized == pytest.approx(math.log(1.00001), rel=1e-6)  # q = [1, 1e-5] / 1.00001
    assert klom(HAND_R, HAND_U, bins=2)[0] == pytest.approx(0.6931472, abs=1e-6)  # KL is not symmetric


def test_margins_are_clipped_to_plus_minus_100():
    unlearned, retrained = np.array([[200.0], [300.0]]), np.array([[150.0], [1000.0]])
    assert klom(unlearned, retrained)[0] == pytest.approx(0.0)  # all at +100 after clipping
    assert klom(unlearned, retrained, clip=1e4)[0] > 1.0


def test_twenty_bins_by_default():
    # unlearned at 0.5 and 1.5, retrained at 0 and 20 (range [0, 20]): with 20 bins of width 1 they
    # fall in bins 0 and 1, the retrained 0 in bin 0 (20 is on the top edge): q = [1, 0, ...],
    # KL = 0.5 ln(0.5 / 1) + 0.5 ln(0.5 / 1e-5); with 10 bins both share bin 0 and KL = 0.
    u, r = np.array([[0.5], [1.5]]), np.array([[0.0], [20.0]])
    assert klom(u, r)[0] == pytest.approx(0.5 * math.log(0.5) + 0.5 * math.log(0.5 / 1e-5), abs=1e-6)
    assert klom(u, r, bins=10)[0] == pytest.approx(0.0)


def test_summary_is_the_95th_percentile_per_split():
    rng = np.random.default_rng(1)
    retrained = {s: rng.normal(size=(10, 40)) for s in ("forget", "retain", "test")}
    unlearned = {"forget": retrained["forget"] + 6.0, "retain": retrained["retain"].copy(),
                 "test": retrained["test"].copy()}
    out = klom_summary(unlearned, retrained)
    assert set(out) == {"forget", "retain", "test"}
    assert out["forget"] == pytest.approx(np.percentile(klom(unlearned["forget"], retrained["forget"]), 95))
    assert out["forget"] > 5.0 and out["retain"] == pytest.approx(0.0) and out["test"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="same n"):
        klom(np.zeros((3, 4)), np.zeros((3, 5)))
