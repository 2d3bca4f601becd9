"""Relearning from the retain set: does forgotten knowledge come back without a single D_f sample?

Siddiqui, Weller, Krueger, Dziugaite, Mozer, Triantafillou, "From Dormant to Deleted:
Tamper-Resistant Unlearning Through Weight-Space Regularization" (2025, arXiv 2505.22310;
reference code shoaibahmed/vision_relearning). Fine-tuning an unlearned model on D_r only
brought forget-set accuracy back from about 50% to nearly 100% for most methods, while a model
retrained without D_f stayed at about 50%. Unlearning that leaves D_f "dormant" (suppressed near
the original weights) fails this check; retrain is the reference it is read against.

`relearn_on_retain` fine-tunes a copy of a model on D_r and records acc(D_f) before and after each
epoch; `relearn_check` runs it for an unlearned model and for retrain with the same data, recipe
and seed, and reports what came back for each:

    returned = acc_after(D_f) - acc_before(D_f)      (accuracies in [0, 1])
    excess_returned = returned(unlearned) - returned(retrain)
    recovered_share = (acc_after(D_f) - acc_before(D_f)) / (acc_original(D_f) - acc_before(D_f))

(the last only when the original model's forget accuracy is given and above acc_before).

Recipe, a deviation named here: the reference relearns for 100 epochs at lr 1e-5 without weight
decay, batch 128, on retain examples. Here the default is the model's own recipe (batch size,
weight decay, label smoothing, clipping, optimizer) at its LR with a constant schedule for
`epochs` (3) epochs over all of D_r; `lr`, `weight_decay`, `epochs` and `n_examples` (a seeded
random subset of D_r) set the reference's reading. The loss is cross-entropy with the recipe's
label smoothing unless `loss` gives the model's own.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..data.dataset import Arrays
from ..train import Hooks, LossFn, accuracy, cross_entropy_loss, fit


def relearn_recipe(recipe: TrainConfig, epochs: int, lr: float | None = None,
                   weight_decay: float | None = None) -> TrainConfig:
    """The model's recipe with the relearning epochs, LR (default: the recipe's) and weight decay
    (default: the recipe's), at a constant schedule."""
    return TrainConfig.model_validate(dict(
        recipe.model_dump(), epochs=epochs, schedule="constant", lr=recipe.lr if lr is None else lr,
        weight_decay=recipe.weight_decay if weight_decay is None else weight_decay))


def relearn_subset(retain: Arrays, n_examples: int | None, seed: int) -> Arrays:
    """All of D_r, or `n_examples` of it drawn without replacement (seeded), in id order."""
    if n_examples is None or n_examples >= len(retain):
        return retain
    pick = np.zeros(len(retain), dtype=bool)
    pick[np.random.default_rng(seed).choice(len(retain), n_examples, replace=False)] = True
    return retain.subset(pick)


def relearn_on_retain(model: nn.Module, retain: Arrays, forget: Arrays, recipe: TrainConfig, seed: int,
                      epochs: int = 3, lr: float | None = None, weight_decay: float | None = None,
                      n_examples: int | None = None, loss: LossFn | None = None) -> dict:
    """Fine-tune a copy of `model` on D_r (never D_f) and track acc(D_f): {"forget_acc_before",
    "forget_acc_after", "returned", "curve" (acc before, then after each epoch), "steps",
    "examples"}. `model` itself is not changed."""
    if len(retain) == 0:
        raise ValueError("relearn: the retain set D_r is empty; there is nothing to fine-tune on")
    data = relearn_subset(retain, n_examples, seed)
    cfg = relearn_recipe(recipe, epochs, lr, weight_decay)
    student = copy.deepcopy(model).requires_grad_(True)
    curve = [accuracy(student, forget)]

    def track(_record: dict) -> bool:
        curve.append(accuracy(student, forget))
        return False

    torch.manual_seed(seed)
    fit(student, data, cfg, seed=seed, params=student.parameters(), desc="relearn",
        hooks=Hooks(loss=loss or cross_entropy_loss(cfg.label_smoothing), on_epoch=track))
    return {"forget_acc_before": curve[0], "forget_acc_after": curve[-1], "returned": curve[-1] - curve[0],
            "curve": curve, "steps": epochs * math.ceil(len(data) / cfg.batch_size), "examples": len(data)}


def relearn_check(unlearned: nn.Module, retrained: nn.Module, retain: Arrays, forget: Arrays, recipe: TrainConfig,
                  seed: int, original_forget_acc: float | None = None, **options) -> dict:
    """`relearn_on_retain` for the unlearned model and for retrain, same data, recipe and seed
    (`options` go to both): {"unlearned": ..., "retrain": ..., "excess_returned",
    "recovered_share"}. A method that only suppressed D_f has excess_returned well above 0."""
    mine = relearn_on_retain(unlearned, retain, forget, recipe, seed, **options)
    gold = relearn_on_retain(retrained, retain, forget, recipe, seed, **options)
    share = math.nan
    if original_forget_acc is not None and original_forget_acc > mine["forget_acc_before"]:
        share = mine["returned"] / (original_forget_acc - mine["forget_acc_before"])
    return {"unlearned": mine, "retrain": gold, "excess_returned": mine["returned"] - gold["returned"],
            "recovered_share": share}
