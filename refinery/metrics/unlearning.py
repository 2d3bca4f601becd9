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
                          class, fitted with members = the first len(test) retain samples
                          (label 1) and non-members = the test set (label 0).

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
                 seed: int = 0, members: str = "first") -> float:
    """Percentage of the forget set predicted non-member by the confidence SVC attack.

    members="first" (default, the reference code: `Classification/main_forget.py` of
    OPTML-Group/Unlearn-Saliency takes `Subset(retain_dataset, range(len(test)))`, scored by
    `evaluation/SVC_MIA.py`'s `SVC_fit_predict` on the "confidence" feature): the members are the
    FIRST len(test) retain samples in the order given (D_r in sample-id order, the dataset's
    order as in the reference), the non-members the whole test set. No randomness; `seed` is
    unused. If the retain set is the smaller one (the reference would fail there), all of it is
    used with the first equally many test samples, so the two classes stay balanced.

    members="random": the other reading of the paper's "a retain subset the size of the test
    set": a random subset drawn with `np.random.default_rng(seed)` (and a random test subset
    when D_r is the smaller).
    """
    retain, test, forget = _as_feature(retain_conf), _as_feature(test_conf), _as_feature(forget_conf)
    if len(retain) == 0 or len(test) == 0 or len(forget) == 0:
        raise ValueError("MIA-efficacy needs non-empty retain, test and forget sets")
    if members not in ("first", "random"):
        raise ValueError(f"members must be 'first' or 'random' (got {members!r})")
    # Imported here: scikit-learn is slow to import and only this attack needs it.
    from sklearn.svm import SVC

    n = min(len(retain), len(test))
    if members == "first":
        shadow_in, shadow_out = retain[:n], test[:n]
    else:
        rng = np.random.default_rng(seed)
        shadow_in = retain[rng.choice(len(retain), size=n, replace=False)]
        shadow_out = test[rng.choice(len(test), size=n, replace=False)] if len(test) > n else test
    x = np.concatenate([shadow_in, shadow_out])
    label = np.concatenate([np.ones(len(shadow_in)), np.zeros(len(shadow_out))])
    attack = SVC(C=3, kernel="rbf", gamma="auto").fit(x, label)
    return float(100.0 * (attack.predict(forget) == 0).mean())


def unlearning_scores(logits_forget: Tensor, y_forget: Tensor, logits_retain: Tensor, y_retain: Tensor,
                      logits_test: Tensor, y_test: Tensor, seed: int = 0, members: str = "first") -> dict[str, float]:
    """UA, RA, TA and MIA-efficacy (all percentages) from a model's logits on D_f, D_r, D_test.
    D_r must be in sample-id order: MIA's members are its first len(test) samples."""
    mia = mia_efficacy(confidence(logits_retain, y_retain), confidence(logits_test, y_test),
                       confidence(logits_forget, y_forget), seed, members)
    return {"UA": 100.0 - 100.0 * accuracy(logits_forget, y_forget),
            "RA": 100.0 * accuracy(logits_retain, y_retain),
            "TA": 100.0 * accuracy(logits_test, y_test),
            "MIA": mia}


def avg_gap(scores: Mapping[str, float], retrain_scores: Mapping[str, float]) -> float:
    """Mean absolute difference from the retrained model over UA, RA, TA and MIA."""
    return float(np.mean([abs(float(scores[k]) - float(retrain_scores[k])) for k in SCORE_KEYS]))


__all__ = ["SCORE_KEYS", "avg_gap", "confidence", "mia_efficacy", "unlearning_scores"]
