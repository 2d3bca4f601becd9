"""Machine-unlearning scores of the Unlearn-Sparse / SalUn protocol.

Jia et al., "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS 2023) and Fan et al.,
"SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency" (ICLR 2024); the
definitions follow their public evaluation code (`evaluation/SVC_MIA.py`). All scores are
percentages in [0, 100]:

- UA  = 100 - acc(D_f)   unlearning accuracy: error on the forget set;
- RA  = acc(D_r)         retain accuracy;
- TA  = acc(D_test)      test accuracy;
- MIA = MIA-efficacy     share of D_f that a confidence-based membership-inference attack
                          calls a non-member. The attack is SVC(C=3, kernel="rbf",
                          gamma="auto") on one feature, the softmax probability of the true
                          class, fitted with members = a retain subset as large as the test
                          set (label 1) and non-members = the test set (label 0).

Avg.Gap = mean |method - retrain| over the four scores; retraining on D_r is the gold standard.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from torch import Tensor

from .classification import _check, accuracy

SCORE_KEYS = ("UA", "RA", "TA", "MIA")


def confidence(logits: Tensor, y: Tensor) -> np.ndarray:
    """Softmax probability of the true class for each sample, shape (N,)."""
    logits, y = _check(logits, y)
    probs = logits.softmax(dim=-1)
    return probs.gather(1, y.unsqueeze(1)).squeeze(1).numpy()


def _as_feature(conf: np.ndarray | Tensor) -> np.ndarray:
    conf = conf.detach().cpu().numpy() if isinstance(conf, Tensor) else np.asarray(conf)
    return conf.astype(np.float64).reshape(-1, 1)


def mia_efficacy(retain_conf: np.ndarray, test_conf: np.ndarray, forget_conf: np.ndarray,
                 seed: int) -> float:
    """Percentage of the forget set predicted non-member by the confidence SVC attack.

    Members are a random subset of the retain set as large as the test set, drawn with
    `np.random.default_rng(seed)`, so the score is a deterministic function of its inputs and
    the seed. If the retain set is the smaller one, all of it is used and an equally large
    random subset of the test set stands for the non-members.
    """
    retain, test, forget = _as_feature(retain_conf), _as_feature(test_conf), _as_feature(forget_conf)
    if len(retain) == 0 or len(test) == 0 or len(forget) == 0:
        raise ValueError("MIA-efficacy needs non-empty retain, test and forget sets")
    # Imported here: scikit-learn is slow to import and only this attack needs it.
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    n = min(len(retain), len(test))
    members = retain[rng.choice(len(retain), size=n, replace=False)]
    if len(test) > n:
        # Only when D_r is smaller than D_test (tiny splits, large forget sets): the protocol
        # wants balanced classes, and unbalanced ones would bias the SVC towards "non-member".
        test = test[rng.choice(len(test), size=n, replace=False)]
    x = np.concatenate([members, test])
    label = np.concatenate([np.ones(len(members)), np.zeros(len(test))])
    attack = SVC(C=3, kernel="rbf", gamma="auto").fit(x, label)
    return float(100.0 * (attack.predict(forget) == 0).mean())


def unlearning_scores(logits_forget: Tensor, y_forget: Tensor, logits_retain: Tensor, y_retain: Tensor,
                      logits_test: Tensor, y_test: Tensor, seed: int) -> dict[str, float]:
    """UA, RA, TA and MIA-efficacy (all percentages) from a model's logits on D_f, D_r, D_test."""
    mia = mia_efficacy(confidence(logits_retain, y_retain), confidence(logits_test, y_test),
                       confidence(logits_forget, y_forget), seed)
    return {"UA": 100.0 - 100.0 * accuracy(logits_forget, y_forget),
            "RA": 100.0 * accuracy(logits_retain, y_retain),
            "TA": 100.0 * accuracy(logits_test, y_test),
            "MIA": mia}


def avg_gap(scores: Mapping[str, float], retrain_scores: Mapping[str, float]) -> float:
    """Mean absolute difference from the retrained model over UA, RA, TA and MIA."""
    return float(np.mean([abs(float(scores[k]) - float(retrain_scores[k])) for k in SCORE_KEYS]))


__all__ = ["SCORE_KEYS", "avg_gap", "confidence", "mia_efficacy", "unlearning_scores"]
