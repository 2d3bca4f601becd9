"""Forget requests: which training samples a data owner asked to delete.

A request is always a set of training sample ids. It may name classes (every training sample
of those classes), a random fraction of the training set, or an explicit list of ids or keys.
Recorded deletion requests (refinery/requests/ledger.py) are stored as keys, which outlive ids.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


class ForgetRequestError(ValueError):
    pass


def read_ids_file(path: Path | str) -> np.ndarray:
    """The samples a request file names: int64 sample ids (a `sample_id` column, positions in the
    current preparation) or str sample keys (a `sample_key` column, stable across data changes)."""
    path = Path(path)
    if not path.exists():
        raise ForgetRequestError(f"{path}: forget ids file not found")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=object)
    except Exception as exc:
        raise ForgetRequestError(f"{path}: cannot read ids: {exc}") from None
    if "sample_key" not in frame.columns and "sample_id" not in frame.columns:
        raise ForgetRequestError(f"{path}: needs a 'sample_key' or 'sample_id' column "
                                 f"(has: {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise ForgetRequestError(f"{path}: the request is empty")
    if "sample_key" in frame.columns:
        keys = frame["sample_key"]
        if keys.isna().any():
            raise ForgetRequestError(f"{path}: sample_key has empty values")
        return keys.astype(str).to_numpy(dtype=object)
    ids = pd.to_numeric(frame["sample_id"], errors="coerce")
    if ids.isna().any() or (ids != ids.round()).any():
        raise ForgetRequestError(f"{path}: sample_id must hold integers")
    return ids.to_numpy(dtype=np.int64)


def keys_to_ids(named: np.ndarray, keys: np.ndarray, source: str = "forget") -> np.ndarray:
    """Sample ids (positions in `keys`) of the keys a request names; unknown keys are an error."""
    if named.dtype != object:
        return named
    position = {k: i for i, k in enumerate(keys.tolist())}
    unknown = [k for k in named.tolist() if k not in position]
    if unknown:
        raise ForgetRequestError(f"{source}: unknown sample keys {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    return np.array([position[k] for k in named.tolist()], dtype=np.int64)


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
