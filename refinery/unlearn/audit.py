"""Audit checks beyond the papers' four scores (RESTOR, Rezaei et al. 2024; the SoK on unlearning
evaluation, Hayes et al. 2024): does a method remove D_f, or only suppress it at the output?

- `probe_accuracy`: a linear probe (logistic regression) on the frozen features `model.features(x)`
  tries to tell D_f from held-out samples of the same classes; held-out accuracy near 50% means
  the features no longer encode membership. Retrain is the reference (it never saw D_f).
- `relearn_steps`: fine-tune on D_f until its accuracy is back at the original model's; a method
  that merely suppresses D_f relearns it in far fewer steps than retrain.
- `noisy_ua`: UA on D_f + N(0, sigma^2) noise: forgetting that holds only for the exact inputs
  does not generalise to slightly transformed ones.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..data.dataset import Arrays
from ..train import Hooks, accuracy, fit


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    extract = getattr(model, "features", model)  # a model without features(): its logits
    return torch.cat([extract(x[i:i + batch_size].to(device)).float().flatten(1).cpu()
                      for i in range(0, len(x), batch_size)]).numpy()


def probe_accuracy(model: nn.Module, forget: Arrays, heldout: Arrays, seed: int) -> float:
    """Held-out accuracy (%) of a logistic-regression probe separating D_f from unseen samples of
    D_f's classes (so the probe cannot win by decoding the class); balanced, half for testing."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    same_classes = heldout.subset(np.isin(heldout.y.numpy(), np.unique(forget.y.numpy())))
    n = min(len(forget), len(same_classes))
    if n < 4:
        return float("nan")
    rng = np.random.default_rng(seed)
    pick = lambda d: d.x[torch.from_numpy(np.sort(rng.choice(len(d), n, replace=False)))]  # noqa: E731
    x = np.concatenate([features(model, pick(forget)), features(model, pick(same_classes))])
    label = np.concatenate([np.ones(n), np.zeros(n)])
    order = rng.permutation(2 * n)
    train, test = order[:n], order[n:]
    scaler = StandardScaler().fit(x[train])
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(x[train]), label[train])
    return float(100.0 * probe.score(scaler.transform(x[test]), label[test]))


def relearn_steps(model: nn.Module, forget: Arrays, target_acc: float, recipe: TrainConfig, seed: int,
                  max_epochs: int = 30) -> tuple[int, bool]:
    """(optimizer steps, recovered?) to fine-tune a copy on D_f (CE, the recipe's LR, constant)
    until acc(D_f) >= target_acc; capped at `max_epochs` epochs over D_f (then recovered=False).
    Checked after each epoch of D_f: `on_epoch` returns True to end the fit there."""
    if len(forget) == 0:
        return 0, True
    if accuracy(model, forget) >= target_acc:
        return 0, True
    cfg = TrainConfig.model_validate(dict(recipe.model_dump(), epochs=max_epochs, schedule="constant",
                                          batch_size=min(recipe.batch_size, 32)))
    steps_per_epoch = math.ceil(len(forget) / cfg.batch_size)
    student = copy.deepcopy(model).requires_grad_(True)
    recovered_at: list[int] = []

    def check(record: dict) -> bool:
        if accuracy(student, forget) >= target_acc:
            recovered_at.append(int(record["epoch"]))
            return True
        return False

    fit(student, forget, cfg, seed=seed, params=student.parameters(), desc="relearn",
        hooks=Hooks(loss=lambda m, x, y, ids, at=None: F.cross_entropy(m(x), y), on_epoch=check))
    if recovered_at:
        return recovered_at[0] * steps_per_epoch, True
    return max_epochs * steps_per_epoch, False


def noisy_ua(model: nn.Module, forget: Arrays, seed: int, sigma: float = 0.1) -> float:
    """UA (%) on the forget samples with Gaussian noise N(0, sigma^2) added to the inputs."""
    if len(forget) == 0:
        return float("nan")
    noise = torch.randn(forget.x.shape, generator=torch.Generator().manual_seed(seed)) * sigma
    noisy = Arrays(forget.x.cpu() + noise.to(forget.x.dtype), forget.y.cpu(), forget.ids.cpu())
    return 100.0 * (1.0 - accuracy(model, noisy))


def audit(model: nn.Module, forget: Arrays, heldout: Arrays, original_forget_acc: float, recipe: TrainConfig,
          seed: int) -> dict:
    steps, recovered = relearn_steps(model, forget, original_forget_acc, recipe, seed)
    return {"probe_acc": probe_accuracy(model, forget, heldout, seed), "relearn_steps": steps,
            "relearn_recovered": recovered, "noisy_UA": noisy_ua(model, forget, seed)}
