"""Stable sample keys, content hashes, and splits assigned from keys.

A sample's *key* names it independently of load order, so it survives data changes: the file's
path relative to the folder for an image folder, `<batch file>:<row>` for CIFAR batches, the row's
content hash for Parquet and NPZ (with `#2`, `#3`, ... on exact duplicates), and the position for
the built-in sets, which never change. Deletion requests name keys; sample ids stay positions in
the prepared arrays and are only valid within one preparation.

A sample's *content hash* is the sha256 of its prepared input array (float32, channels first,
after any resize): the same image under another name has the same content hash, which is how a
deleted sample that comes back is recognised.

`key_split` assigns train/val/test from a hash of (seed, key) alone, so adding or removing other
samples never moves a sample between splits (a positional stratified split reshuffles them all).
"""
from __future__ import annotations

import hashlib

import numpy as np

from .splits import TEST, TRAIN, VAL


def content_hashes(x: np.ndarray) -> np.ndarray:
    """One hex sha256 (first 32 digits) per sample of `x`, over its float32 bytes."""
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
    return np.array([hashlib.sha256(row.tobytes()).hexdigest()[:32] for row in rows], dtype=object)


def positional_keys(n: int) -> np.ndarray:
    return np.array([str(i) for i in range(n)], dtype=object)


def content_keys(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Keys from each row's content and label; the k-th exact duplicate gets `#k` appended."""
    seen: dict[str, int] = {}
    keys = []
    for digest, label in zip(content_hashes(x), np.asarray(y).tolist()):
        base = f"{digest[:20]}-{label}"
        seen[base] = seen.get(base, 0) + 1
        keys.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return np.array(keys, dtype=object)


def _unit(seed: int, keys: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per key, from sha256(seed, key): independent of the other keys."""
    return np.array([int.from_bytes(hashlib.sha256(f"{seed}\0{k}".encode()).digest()[:8], "big") / 2.0 ** 64
                     for k in keys.tolist()])


def key_split(keys: np.ndarray, val_fraction: float, test_fraction: float, seed: int,
              published_test: np.ndarray | None = None) -> np.ndarray:
    """Split codes from each key's hash: test below `test_fraction` (unless the source publishes
    its test split), then val. Shares are met in expectation, not exactly, and per class only in
    expectation: that is the price of never moving a sample when others are added."""
    u = _unit(seed, keys)
    split = np.full(len(keys), TRAIN, dtype=np.int8)
    if published_test is not None:
        split[published_test] = TEST
        split[~published_test & (u < val_fraction)] = VAL
    else:
        split[u < test_fraction] = TEST
        split[(u >= test_fraction) & (u < test_fraction + val_fraction)] = VAL
    return split


def hash_rank(seed: int, keys: np.ndarray, salt: str) -> np.ndarray:
    """Keys ordered by sha256(seed, salt, key): a seeded draw that does not depend on load order."""
    return keys[np.argsort(_unit(seed, np.array([f"{salt}\0{k}" for k in keys.tolist()], dtype=object)),
                           kind="stable")]
