"""Forget requests: which training samples a data owner asked to delete.

A request is always a set of training sample ids. It may name classes (every training sample
of those classes), a random fraction of the training set, or an explicit list of ids.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


class ForgetRequestError(ValueError):
    pass


def read_ids_file(path: Path | str) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise ForgetRequestError(f"{path}: forget ids file not found")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:
        raise ForgetRequestError(f"{path}: cannot read ids: {exc}") from None
    if "sample_id" not in frame.columns:
        raise ForgetRequestError(f"{path}: needs a 'sample_id' column (has: {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise ForgetRequestError(f"{path}: the request is empty")
    ids = pd.to_numeric(frame["sample_id"], errors="coerce")
    if ids.isna().any() or (ids != ids.round()).any():
        raise ForgetRequestError(f"{path}: sample_id must hold integers")
    return ids.to_numpy(dtype=np.int64)


def resolve_request(mode: str, *, y: np.ndarray, train_mask: np.ndarray, seed: int,
                    classes: list[int] | None = None, fraction: float | None = None,
                    ids: np.ndarray | None = None, source: str = "forget") -> np.ndarray:
    """Return the sorted training sample ids to forget; raise ForgetRequestError if invalid."""
    train_ids = np.flatnonzero(train_mask)
    if mode == "classes":
        known = set(np.unique(y).tolist())
        unknown = sorted(set(classes or []) - known)
        if unknown:
            raise ForgetRequestError(f"{source}.classes: unknown class {unknown} (known: {sorted(known)})")
        chosen = train_ids[np.isin(y[train_ids], classes)]
    elif mode == "fraction":
        n = int(round(fraction * len(train_ids)))
        chosen = np.sort(np.random.default_rng(seed).permutation(train_ids)[:max(n, 1)])
    elif mode == "ids":
        ids = np.asarray(ids, dtype=np.int64)
        values, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ForgetRequestError(f"{source}: duplicate sample ids {values[counts > 1][:5].tolist()}")
        outside = np.setdiff1d(values, train_ids)
        if len(outside):
            raise ForgetRequestError(f"{source}: ids not in the training split: {outside[:5].tolist()}"
                                     f"{' ...' if len(outside) > 5 else ''}")
        chosen = values
    else:
        raise ForgetRequestError(f"{source}.mode: unknown mode {mode!r} (allowed: classes, fraction, ids)")
    if len(chosen) == 0:
        raise ForgetRequestError(f"{source}: the request selects no training samples")
    if len(chosen) >= len(train_ids):
        raise ForgetRequestError(f"{source}: the request covers every training sample; nothing would remain")
    return chosen


# Split code, in arrays.zarr, of training samples removed by an exact request (`forget.exact`):
# not train, val or test, so no stage trains on them, while the unlearn stage can still score them.
FORGOTTEN = 3
