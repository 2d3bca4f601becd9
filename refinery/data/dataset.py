"""The prepared dataset in memory: tensors plus sample ids, sliced into batches by the loop.

Small datasets fit in memory (and on a GPU), where slicing beats a DataLoader.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..store import read_arrays
from .splits import TEST, TRAIN, VAL

FORGOTTEN_ARRAYS = "forgotten.zarr"  # beside arrays.zarr: D_f of an exact deletion until it is purged


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
    forgotten: Arrays | None = None  # D_f of an exact deletion, kept apart (forgotten.zarr) to be scored

    @property
    def num_samples(self) -> int:
        """One more than the largest sample id: the size of a table indexed by sample id."""
        parts = [self.train, self.val, self.test] + ([self.forgotten] if self.forgotten is not None else [])
        return max((int(p.ids.max()) + 1 for p in parts if len(p)), default=0)


def load_prepared(arrays_path: Path | str, forgotten: bool = False) -> Prepared:
    """The prepared splits; with `forgotten`, also the kept-apart D_f of an exact deletion
    (forgotten.zarr beside the arrays), whose ids continue after the arrays' positions. Only the
    unlearn stage reads it (it scores D_f), so only it depends on it."""
    data, attrs = read_arrays(arrays_path, ["x", "y", "split"])
    full = Arrays.from_numpy(data["x"], data["y"])
    split = data["split"]
    kept_apart = None
    if forgotten and (Path(arrays_path).parent / FORGOTTEN_ARRAYS).exists():
        rest, _ = read_arrays(Path(arrays_path).parent / FORGOTTEN_ARRAYS, ["x", "y"])
        ids = np.arange(len(split), len(split) + len(rest["y"]))
        kept_apart = Arrays.from_numpy(rest["x"], rest["y"], ids)
    return Prepared(full.subset(split == TRAIN), full.subset(split == VAL), full.subset(split == TEST),
                    int(attrs["num_classes"]), tuple(data["x"].shape[1:]), kept_apart)
