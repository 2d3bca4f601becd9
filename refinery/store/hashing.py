"""Content hashes for artifacts, so a manifest can say exactly what a result came from."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

import numpy as np


def arrays_hash(arrays: Mapping[str, np.ndarray], dtypes: Mapping[str, str] | None = None) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        dtype = dtypes[name] if dtypes else str(a.dtype)
        h.update(f"{name}|{dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def attrs_hash(attrs: Mapping[str, object], exclude: str = "content_hash") -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces, ASCII) of `attrs` less `exclude`.

    A group's attrs hold a hash of every array, so this one hash covers the attrs and the arrays."""
    body = {k: v for k, v in attrs.items() if k != exclude}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                                     allow_nan=True).encode()).hexdigest()


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def path_hash(path: Path | str) -> str:
    """sha256 of a file, or of a directory's sorted (relative name, file hash) pairs."""
    path = Path(path)
    if path.is_file():
        return file_hash(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(path)).encode())
        h.update(file_hash(file).encode())
    return h.hexdigest()
