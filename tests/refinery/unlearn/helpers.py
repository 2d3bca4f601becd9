"""Helpers shared by the unlearning tests (fixtures live in conftest.py)."""
from __future__ import annotations

import numpy as np
import torch

from refinery.data.dataset import Arrays
from refinery.train import cross_entropy_loss

FORGET_CLASS = 3
SEED = 0


def class_forget_ids(train: Arrays, cls: int = FORGET_CLASS) -> np.ndarray:
    return train.ids[train.y == cls].numpy()


def random_forget_ids(train: Arrays, n: int = 40, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(train.ids.numpy(), n, replace=False))


class IdRecorder:
    """A loss hook (the model's CE) that records every sample id the training loop fed it."""

    def __init__(self, label_smoothing: float):
        self.inner = cross_entropy_loss(label_smoothing)
        self.seen: list[int] = []
        self.calls = 0

    def __call__(self, model, x, y, ids, at=None):
        self.seen.extend(ids.cpu().tolist())
        self.calls += 1
        return self.inner(model, x, y, ids)


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"
