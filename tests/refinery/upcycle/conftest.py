"""A tiny dense teacher on a slice of scikit-learn's digits, shared by the recipe tests."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from refinery.config import TrainConfig, UpcycleConfig
from refinery.data.dataset import Arrays, Prepared
from refinery.models import build_model, make_arch
from refinery.train import fit


def _arrays(x, y, offset):
    return Arrays(torch.from_numpy(x), torch.from_numpy(y).long(), torch.arange(offset, offset + len(y)))


@pytest.fixture(scope="session")
def digits() -> Prepared:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))[:600]
    x, y = x[order], y[order]
    return Prepared(_arrays(x[:400], y[:400], 0), _arrays(x[400:450], y[400:450], 400),
                    _arrays(x[450:], y[450:], 450), 10, (1, 8, 8))


@pytest.fixture(scope="session")
def teacher(digits):
    torch.manual_seed(0)
    arch = make_arch({"arch": "cct", "dim": 16, "depth": 2, "heads": 2, "conv_channels": 8}, digits.in_shape, 10)
    model = build_model(arch)
    fit(model, digits.train, TrainConfig(epochs=3, batch_size=64), seed=0)
    return model.eval(), arch


def small_config(**kwargs) -> UpcycleConfig:
    base = {"num_experts": 4, "top_k": 2, "expert_epochs": 2,
            "train": TrainConfig(epochs=1, batch_size=64, lr=1e-3)}
    return UpcycleConfig(**{**base, **kwargs})
