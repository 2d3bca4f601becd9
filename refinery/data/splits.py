"""Deterministic stratified splits. Split codes: 0 = train, 1 = val, 2 = test."""
from __future__ import annotations

import numpy as np

from .base import DataSourceError

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VAL: "val", TEST: "test"}


def _carve(y: np.ndarray, candidates: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Pick round(fraction * n_c) of `candidates` from each class c."""
    picked = []
    for c in np.unique(y[candidates]):
        members = candidates[y[candidates] == c]
        n = int(round(fraction * len(members)))
        picked.append(rng.permutation(members)[:n])
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=np.int64)


def stratified_split(y: np.ndarray, val_fraction: float, test_fraction: float, seed: int,
                     published_test: np.ndarray | None = None) -> np.ndarray:
    """Return a split code per sample. The same (y, fractions, seed) always gives the same codes."""
    rng = np.random.default_rng(seed)
    split = np.full(len(y), TRAIN, dtype=np.int8)
    everything = np.arange(len(y))
    if published_test is not None:
        split[published_test] = TEST
    else:
        split[_carve(y, everything, test_fraction, rng)] = TEST
    remaining = everything[split == TRAIN]
    val_share = val_fraction / (1.0 - (0.0 if published_test is not None else test_fraction))
    split[_carve(y, remaining, val_share, rng)] = VAL
    return split


SPLIT_MODES = ("auto", "stratified", "published")


def choose_test_split(mode: str, published_test: np.ndarray | None, where: str) -> tuple[str, np.ndarray | None]:
    """Which split `data.split` means for this source: ('published' | 'stratified', test mask or None).

    auto takes the source's own test split where it has one (CIFAR's test batch, an npz's
    x_test/y_test, MNIST-1D's), so a user's published split is used without being asked for;
    published insists on it; stratified ignores it and carves a test set from everything."""
    if mode not in SPLIT_MODES:
        raise ValueError(f"data.split: unknown mode {mode!r}; modes: {', '.join(SPLIT_MODES)}")
    if mode == "published" and published_test is None:
        raise DataSourceError(f"{where}: data.split 'published' needs a test split in the source (x_test, y_test)")
    if mode == "stratified" or published_test is None:
        return "stratified", None
    return "published", published_test
