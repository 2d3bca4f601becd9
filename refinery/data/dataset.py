"""The prepared dataset in memory: tensors plus sample ids, sliced into batches by the loop.

Small datasets fit in memory (and on a GPU), where slicing beats a DataLoader.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..store import read_arrays
from .forget import FORGOTTEN
from .splits import TEST, TRAIN, VAL


@dataclass
class Arrays:
    x: torch.Tensor
    y: torch.Tensor
    ids: torch.Tensor  # sample ids (positions in the prepared arrays)

    @classmethod
    def from_numpy(cls, x: np.ndarray, y: np.ndarray, ids: np.ndarray | None = None) -> Arrays:
        """Samples from numpy arrays; ids default to positions (the prepared sample ids)."""
        ids = np.arange(len(y)) if ids is None else ids
        return cls(torch.from_numpy(x), torch.from_numpy(y).long(), torch.from_numpy(np.asarray(ids)).long())

    def union(self, other: Arrays) -> Arrays:
        """Both sets together, ordered by sample id."""
        ids = torch.cat([self.ids, other.ids])
        order = torch.argsort(ids, stable=True)
        return Arrays(torch.cat([self.x, other.x])[order], torch.cat([self.y, other.y])[order], ids[order])

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray | torch.Tensor) -> Arrays:
        mask = torch.as_tensor(mask, dtype=torch.bool)
        return Arrays(self.x[mask], self.y[mask], self.ids[mask])

    def without(self, ids: np.ndarray) -> Arrays:
        return self.subset(~np.isin(self.ids.numpy(), ids))

    def only(self, ids: np.ndarray) -> Arrays:
        return self.subset(np.isin(self.ids.numpy(), ids))

    def to(self, device: torch.device | str) -> Arrays:
        return Arrays(self.x.to(device), self.y.to(device), self.ids.to(device))


def stratified_subset(arrays: Arrays, fraction: float, seed: int) -> Arrays:
    """A seeded random `fraction` of `arrays`, stratified by class: round(fraction * n_c) samples
    (at least 1) of each class c, in their original order. The same (arrays, fraction, seed) always
    gives the same samples; fraction 1.0 returns `arrays` itself and draws nothing."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return arrays
    rng = np.random.default_rng(seed)
    y = arrays.y.cpu().numpy()
    keep = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        keep[rng.permutation(members)[:max(1, int(round(fraction * len(members))))]] = True
    return arrays.subset(torch.from_numpy(keep).to(arrays.y.device))


@dataclass
class Prepared:
    train: Arrays
    val: Arrays
    test: Arrays
    num_classes: int
    in_shape: tuple[int, ...]
    forgotten: Arrays | None = None  # moved out of train by an exact deletion (split code FORGOTTEN)


def load_prepared(arrays_path: Path | str) -> Prepared:
    data, attrs = read_arrays(arrays_path, ["x", "y", "split"])
    full = Arrays.from_numpy(data["x"], data["y"])
    split = data["split"]
    return Prepared(full.subset(split == TRAIN), full.subset(split == VAL), full.subset(split == TEST),
                    int(attrs["num_classes"]), tuple(data["x"].shape[1:]), full.subset(split == FORGOTTEN))
