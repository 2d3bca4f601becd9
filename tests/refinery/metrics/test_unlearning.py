"""UA/RA/TA/MIA-efficacy and Avg.Gap of the SalUn / Unlearn-Sparse protocol."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from refinery.metrics.classification import accuracy
from refinery.metrics.unlearning import SCORE_KEYS, avg_gap, confidence, mia_efficacy, unlearning_scores

# SalUn, Table (CIFAR-10, ResNet-18, 10% random forgetting), as quoted in METHODS.md.
RETRAIN = {"UA": 5.24, "RA": 100.00, "TA": 94.26, "MIA": 12.88}
PUBLISHED = {  # method: (scores, published Avg.Gap)
    "FT": ({"UA": 0.63, "RA": 99.88, "TA": 94.06, "MIA": 2.70}, 3.78),
    "GA": ({"UA": 0.69, "RA": 99.50, "TA": 94.01, "MIA": 1.70}, 4.12),
    "RL": ({"UA": 7.61, "RA": 99.67, "TA": 92.83, "MIA": 37.36}, 7.15),
    "SalUn": ({"UA": 2.85, "RA": 99.62, "TA": 93.93, "MIA": 14.39}, 1.15),
}


def confident_logits(n: int, classes: int, correct_frac: float,
                     gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, classes, (n,), generator=gen)
    logits = torch.randn(n, classes, generator=gen)
    right = torch.rand(n, generator=gen) < correct_frac
    target = torch.where(right, y, (y + 1) % classes)
    logits[torch.arange(n), target] += 4.0
    return logits, y


def test_confidence_is_softmax_probability_of_true_class():
    logits = torch.tensor([[0.0, np.log(3.0)], [2.0, 0.0]], dtype=torch.float64)
    conf = confidence(logits, torch.tensor([1, 1]))
    assert isinstance(conf, np.ndarray) and conf.shape == (2,)
    np.testing.assert_allclose(conf, [0.75, 1 / (1 + np.exp(2.0))], atol=1e-12)


def test_scores_are_percent_accuracies_and_ua_is_forget_error():
    gen = torch.Generator().manual_seed(0)
    lf, yf = confident_logits(60, 4, 0.7, gen)
    lr, yr = confident_logits(300, 4, 0.95, gen)
    lt, yt = confident_logits(100, 4, 0.8, gen)
    scores = unlearning_scores(lf, yf, lr, yr, lt, yt, seed=0)
    assert set(scores) == set(SCORE_KEYS)
    assert scores["UA"] == 100 - accuracy(lf, yf) * 100
    assert scores["RA"] == accuracy(lr, yr) * 100
    assert scores["TA"] == accuracy(lt, yt) * 100
    assert scores["MIA"] == mia_efficacy(confidence(lr, yr), confidence(lt, yt), confidence(lf, yf), seed=0)
    assert all(0.0 <= v <= 100.0 for v in scores.values())


def test_avg_gap_of_retrain_against_itself_is_zero():
    assert avg_gap(RETRAIN, RETRAIN) == 0.0


def test_avg_gap_hand_computed():
    method = {"UA": 5.0, "RA": 100.0, "TA": 94.0, "MIA": 12.0}
    retrain = {"UA": 3.0, "RA": 99.0, "TA": 95.0, "MIA": 20.0, "RTE": 1e6}  # extra keys are ignored
    assert avg_gap(method, retrain) == pytest.approx((2 + 1 + 1 + 8) / 4)


@pytest.mark.parametrize("method", sorted(PUBLISHED))
def test_avg_gap_reproduces_published_salun_table(method):
    scores, published = PUBLISHED[method]
    assert round(avg_gap(scores, RETRAIN), 2) == published


def _attack_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    retain = rng.uniform(0.9, 1.0, 400)  # members: the model is very sure on what it trained on
    test = rng.uniform(0.2, 0.7, 100)  # non-members: visibly less sure
    return retain, test, rng


def test_mia_high_when_forget_set_looks_unseen():
    retain, test, rng = _attack_data()
    forget = rng.uniform(0.2, 0.7, 50)
    assert mia_efficacy(retain, test, forget, seed=0) >= 90.0


def test_mia_low_when_forget_set_looks_trained_on():
    retain, test, rng = _attack_data()
    forget = rng.uniform(0.9, 1.0, 50)
    assert mia_efficacy(retain, test, forget, seed=0) <= 10.0


def test_mia_score_is_fraction_predicted_non_member_in_percent():
    retain, test, _ = _attack_data()
    forget = np.array([0.3, 0.4, 0.5, 0.99])  # three clear non-members, one clear member
    assert mia_efficacy(retain, test, forget, seed=0) == 75.0


def test_mia_members_are_the_first_test_size_retain_samples():
    """As the reference (`Subset(retain_dataset, range(len(test)))`): the first len(test) retain
    samples are the members; what follows them, and the seed, change nothing."""
    rng = np.random.default_rng(1)
    head = rng.uniform(0.0, 1.0, 200)  # overlapping distributions: which members matters
    tail = rng.uniform(0.5, 1.0, 800)
    test = rng.uniform(0.0, 0.8, 200)
    forget = rng.uniform(0.0, 1.0, 300)
    first = mia_efficacy(np.concatenate([head, tail]), test, forget, seed=3)
    assert first == mia_efficacy(head, test, forget, seed=0)
    assert first == mia_efficacy(np.concatenate([head, rng.permutation(tail)]), test, forget, seed=5)
    assert first == mia_efficacy(torch.tensor(np.concatenate([head, tail])), torch.tensor(test), torch.tensor(forget))
    assert first != mia_efficacy(np.concatenate([tail, head]), test, forget, seed=3)


def test_mia_random_members_option_is_seeded():
    rng = np.random.default_rng(1)
    retain = rng.uniform(0.0, 1.0, 1000)
    test = rng.uniform(0.0, 0.8, 200)
    forget = rng.uniform(0.0, 1.0, 300)
    first = mia_efficacy(retain, test, forget, seed=3, members="random")
    assert mia_efficacy(retain, test, forget, seed=3, members="random") == first
    assert len({mia_efficacy(retain, test, forget, seed=s, members="random") for s in range(6)}) > 1


def test_mia_keeps_classes_balanced_when_retain_is_smaller_than_test():
    rng = np.random.default_rng(0)
    retain, test = rng.uniform(0.9, 1.0, 10), rng.uniform(0.2, 0.7, 40)
    assert mia_efficacy(retain, test, np.array([0.3, 0.5, 0.95, 0.97]), seed=0) == 50.0


def test_mia_rejects_empty_sets():
    for retain, test, forget in [(np.ones(10), np.zeros(5), np.zeros(0)), (np.ones(0), np.zeros(5), np.zeros(3))]:
        with pytest.raises(ValueError):
            mia_efficacy(retain, test, forget, seed=0)
