"""CIFAR-10 / CIFAR-100 from a local folder in the original python-pickle batch format
(Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009):

    cifar-10-batches-py/  data_batch_1..5, test_batch, batches.meta   (labels: b"labels")
    cifar-100-python/     train, test, meta                           (labels: b"fine_labels")

Each batch is a dict with b"data", a uint8 (N, 3072) array of channel-first 32x32 images.
The files are user data, not code, so they are read with a restricted Unpickler that builds
only plain containers and numpy arrays; any other global in the stream is refused.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .base import DataSourceError, Source, existing, finish, resize_batch

LAYOUT = {  # variant -> (train files, test files, meta file, label key, names key, classes)
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                b"labels", b"label_names", 10),
    "cifar100": (["train"], ["test"], "meta", b"fine_labels", b"fine_label_names", 100),
}


class _Refused(pickle.UnpicklingError):
    """The stream names a global outside the allow-list."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    if encoding != "latin1":
        raise _Refused(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


class _ArraysOnly(pickle.Unpickler):
    """Builds dict/list/bytes/str/int (native opcodes) and numpy arrays; nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"global {module}.{name} is not allowed in a data file")


def read_batch(path: Path) -> dict:
    """One pickle batch as a dict; a DataSourceError for anything malformed or unsafe."""
    try:
        with open(path, "rb") as fh:
            batch = _ArraysOnly(fh, encoding="bytes").load()
    except _Refused as exc:
        raise DataSourceError(f"{path}: refused pickle ({exc}); data files may hold only arrays and lists") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise DataSourceError(f"{path}: truncated or corrupt pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise DataSourceError(f"{path}: expected a dict, got {type(batch).__name__}")
    return {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}


def _images_and_labels(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = read_batch(path)
    for key in (b"data", label_key):
        if key not in batch:
            raise DataSourceError(f"{path}: missing key {key.decode()!r}")
    data, labels = batch[b"data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataSourceError(f"{path}: 'data' must be a (N, 3072) uint8 array, got {shape}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataSourceError(f"{path}: {label_key.decode()!r} must be a list of integers") from None
    if labels.shape != (len(data),):
        raise DataSourceError(f"{path}: {len(data)} images but {labels.size} labels")
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        raise DataSourceError(f"{path}: label {int(labels[outside][0])} out of range [0, {num_classes})")
    return data.reshape(-1, 3, 32, 32), labels


def _num_classes(root: Path, meta: str, names_key: bytes, default: int) -> int:
    path = root / meta
    if not path.exists():
        return default  # the meta file only names the classes; the count is fixed by the variant
    names = read_batch(path).get(names_key)
    if not isinstance(names, list) or not names:
        raise DataSourceError(f"{path}: missing or empty {names_key.decode()!r}")
    return len(names)


def load_cifar(variant: str, path: Path | str | None = None, resize: tuple[int, int] | None = None,
               **_: object) -> Source:
    root = existing(path, variant)
    if not root.is_dir():
        raise DataSourceError(f"{root}: expected a folder with the {variant} batch files")
    train_files, test_files, meta, label_key, names_key, default = LAYOUT[variant]
    missing = [f for f in train_files + test_files if not (root / f).is_file()]
    if missing:
        raise DataSourceError(f"{root}: missing {variant} batch file(s) {', '.join(missing)}")
    num_classes = _num_classes(root, meta, names_key, default)
    parts = [_images_and_labels(root / f, label_key, num_classes) for f in train_files + test_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    n_test = sum(len(p[1]) for p in parts[len(train_files):])
    test = np.zeros(len(y), dtype=bool)
    test[len(y) - n_test:] = True
    x = resize_batch(x.astype(np.float32) / 255.0, resize)
    return finish(x, y, str(root), num_classes=num_classes, published_test=test)


def load_cifar10(**kwargs: object) -> Source:
    return load_cifar("cifar10", **kwargs)


def load_cifar100(**kwargs: object) -> Source:
    return load_cifar("cifar100", **kwargs)
