"""What every data source returns, the one error type for bad user data, and the checks every
loader shares (finite values, integer labels in range and a sane class count, one image size)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DataSourceError(ValueError):
    """Bad input data, described in one line that names the file and the problem."""


# More class ids than this is a broken label column (raw ids, a stray value), not a dataset: every
# model's head and every per-class array is sized by the class count.
MAX_CLASSES = 10_000


@dataclass
class Source:
    x: np.ndarray            # float32, (N, C, ...) channels first
    y: np.ndarray            # int64, (N,)
    num_classes: int
    published_test: np.ndarray | None = None  # bool (N,), where the source defines its own test split
    keys: np.ndarray | None = None  # str (N,): stable sample keys (refinery/data/keys.py); None: positions


def existing(path: Path | str | None, what: str) -> Path:
    """The path, or a DataSourceError if it is unset or missing."""
    if path is None or str(path) == "":
        raise DataSourceError(f"data.path: the {what} source needs a path")
    path = Path(path)
    if not path.exists():
        raise DataSourceError(f"{path}: not found ({what} source)")
    return path


SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")  # files there are the kernel's, and reading some blocks


def fingerprint(path: Path | str) -> str:
    """A hash of the content of the files at `path` (a file or a folder tree) with their relative
    names: it changes when a file is added, removed, renamed or edited, and only then (a copy
    or a touched file with the same bytes keeps it). Reading every byte costs about a second
    per GB; sizes and times alone miss an edit that keeps both."""
    path = existing(path, "user data")
    if any(path.resolve().is_relative_to(system) for system in SYSTEM_FOLDERS):
        raise DataSourceError(f"{path}: a system folder, not a data set; point data.path at your files")
    h = hashlib.sha256()
    try:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            h.update(f"{f.relative_to(path) if f != path else f.name}\0".encode())
            with open(f, "rb") as stream:
                h.update(hashlib.file_digest(stream, "sha256").digest())
    except OSError as exc:
        raise DataSourceError(f"{exc.filename or path}: cannot read it ({exc.strerror or exc})") from None
    return h.hexdigest()[:16]


def resize_batch(x: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize (N, C, H, W) float images to `size` (antialiased bilinear, as Pillow does)."""
    if size is None or tuple(x.shape[2:]) == tuple(size):
        return x
    import torch
    import torch.nn.functional as F

    out = [F.interpolate(torch.from_numpy(x[i:i + 1024]), size=tuple(size), mode="bilinear",
                         antialias=True, align_corners=False) for i in range(0, len(x), 1024)]
    return torch.cat(out).numpy()


def labels_from(values: np.ndarray, where: str) -> tuple[np.ndarray, list[str] | None]:
    """Integer class ids from a label array; string labels map to their sorted order."""
    values = np.asarray(values)
    if values.dtype.kind in "OUS":
        if any(v is None for v in values.tolist()):
            raise DataSourceError(f"{where}: labels contain missing values")
        names = sorted({str(v) for v in values.tolist()})
        lookup = {n: i for i, n in enumerate(names)}
        return np.array([lookup[str(v)] for v in values.tolist()], dtype=np.int64), names
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise DataSourceError(f"{where}: labels contain NaN or infinite values")
        if (values != np.round(values)).any():
            raise DataSourceError(f"{where}: labels must be integers "
                                  f"(found {values[values != np.round(values)][0].item()!r})")
    elif values.dtype.kind not in "iub":
        raise DataSourceError(f"{where}: labels must be integers or strings, got dtype {values.dtype}")
    check_class_ids(values, where)  # before the cast: 1e30 would wrap to a negative int64
    return values.astype(np.int64), None


def check_class_ids(labels: np.ndarray, where: str, n_samples: int | None = None) -> None:
    """Refuse labels whose largest id implies an absurd class count: MAX_CLASSES or more, or (given
    `n_samples`) more classes than samples. Class ids must run from 0 to K-1."""
    if labels.size == 0:
        return
    sample = int(np.argmax(labels))
    largest = labels[sample].item()
    if largest >= MAX_CLASSES:
        raise DataSourceError(f"{where}: label {largest!r} (sample {sample}) exceeds the limit of {MAX_CLASSES} "
                              "classes; class ids must run from 0 to K-1")
    if n_samples is not None and largest >= n_samples:
        raise DataSourceError(f"{where}: label {largest!r} (sample {sample}) implies {largest + 1} classes for "
                              f"{n_samples} samples; class ids must run from 0 to K-1")


def finish(x: np.ndarray, y: np.ndarray, where: str, num_classes: int | None = None,
           published_test: np.ndarray | None = None, keys: np.ndarray | None = None) -> Source:
    """Check a loaded dataset and return it as a Source; raise DataSourceError on bad data."""
    if len(x) == 0:
        raise DataSourceError(f"{where}: no samples")
    if len(x) != len(y):
        raise DataSourceError(f"{where}: {len(x)} inputs but {len(y)} labels")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
        raise DataSourceError(f"{where}: inputs contain NaN or infinite values (first at sample {bad})")
    y = np.asarray(y, dtype=np.int64)
    if num_classes is None:
        check_class_ids(y, where, n_samples=len(y))
    elif num_classes > MAX_CLASSES:
        raise DataSourceError(f"{where}: {num_classes} classes exceed the limit of {MAX_CLASSES}")
    limit = num_classes if num_classes is not None else int(y.max()) + 1
    outside = (y < 0) | (y >= limit)
    if outside.any():
        raise DataSourceError(f"{where}: label {int(y[outside][0])} out of range [0, {limit}) "
                              f"(sample {int(np.flatnonzero(outside)[0])})")
    if x.ndim < 2:
        raise DataSourceError(f"{where}: each sample must be an array, got inputs of shape {x.shape}")
    return Source(x=x, y=y, num_classes=limit, published_test=published_test, keys=keys)
