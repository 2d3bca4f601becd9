"""Shared fixtures: a tiny MLP (dim 16) trained on sklearn digits, and contexts built on it."""
from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from refinery.config import TrainConfig, UnlearnConfig
from refinery.data.dataset import Arrays
from refinery.models import build_model, make_arch
from refinery.train import fit
from refinery.unlearn import UnlearnContext

from .helpers import SEED


@contextmanager
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two
    threads per process run about 3x slower under contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def digits() -> tuple[Arrays, Arrays]:
    """(train, test): a fixed 80/20 split of sklearn digits; ids are positions in the full set."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy((bunch.images.astype(np.float32) / 16.0)[:, None])
    y = torch.from_numpy(bunch.target.astype(np.int64))
    full = Arrays(x, y, torch.arange(len(y)))
    test_mask = np.random.default_rng(0).random(len(y)) < 0.2
    return full.subset(~test_mask), full.subset(test_mask)


@pytest.fixture(scope="session")
def arch() -> dict:
    return make_arch({"arch": "mlp", "dim": 16, "depth": 1, "mlp_ratio": 2.0, "dropout": 0.0}, (1, 8, 8), 10)


@pytest.fixture(scope="session")
def train_cfg() -> TrainConfig:
    return TrainConfig(epochs=6, batch_size=64, lr=1e-2, weight_decay=0.0)


@pytest.fixture(scope="session")
def _trained(digits, arch, train_cfg):
    with one_thread():
        torch.manual_seed(SEED)
        model = build_model(arch)
        fit(model, digits[0], train_cfg, seed=SEED)
    return model


@pytest.fixture
def trained(_trained):
    """A fresh copy per test, so a test that (wrongly) mutates it cannot leak into others."""
    return copy.deepcopy(_trained)


@pytest.fixture
def make_ctx(digits, arch, train_cfg, trained):
    """make_ctx(forget_ids, **overrides) -> UnlearnContext on the trained model."""
    def make(forget_ids: np.ndarray, **kw) -> UnlearnContext:
        train = digits[0]
        fields = dict(model=trained, arch=arch, retain=train.without(forget_ids), forget=train.only(forget_ids),
                      train_cfg=train_cfg, seed=SEED, cfg=UnlearnConfig())
        fields.update(kw)
        return UnlearnContext(**fields)
    return make
