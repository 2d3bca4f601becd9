"""Deterministic stratified splits. Split codes: 0 = train, 1 = val, 2 = test."""
from __future__ import annotations

import numpy as np

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
