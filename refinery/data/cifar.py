"""CIFAR-10 / CIFAR-100 from a local folder in the original python-pickle batch format
(Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009):

    cifar-10-batches-py/  data_batch_1..5, test_batch, batches.meta   (labels: b"labels")
    cifar-100-python/     train, test, meta                           (labels: b"fine_labels")

Each batch is a dict with b"data", a uint8 (N, 3072) array of channel-first 32x32 images.
The files are user data, not code, so they are read with a restricted Unpickler that builds
only plain containers and numpy arrays of plain bytes, none larger than the file; any other
global in the stream is refused. Types and lengths are checked before anything is converted.
"""
from __future__ import annotations

import functools
import math
import pickle
from pathlib import Path

import numpy as np

from .base import MAX_CLASSES, DataSourceError, Source, existing, finish, resize_batch

LAYOUT = {  # variant -> (train files, test files, meta file, label key, names key, classes)
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                b"labels", b"label_names", 10),
    "cifar100": (["train"], ["test"], "meta", b"fine_labels", b"fine_label_names", 100),
}


class _Refused(pickle.UnpicklingError):
    """The stream names a global outside the allow-list, or asks for more than the file holds."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    if encoding != "latin1":
        raise _Refused(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _plain_dtype(*args: object) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise _Refused("object arrays are not allowed in a data file")
    return dtype


class _CheckedArray(np.ndarray):
    """What numpy's _reconstruct builds here: its state (BUILD) may not make an object array,
    which numpy fills from a list of any length (a short list crashes the process)."""

    def __setstate__(self, state: tuple) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5) or not isinstance(state[-3], np.dtype) \
                or state[-3].hasobject or not isinstance(state[-1], bytes):
            raise _Refused("array state other than plain bytes")
        super().__setstate__(state)


class _NdarrayType:
    """Stands for numpy.ndarray in the stream: numpy's pickles only pass it to _reconstruct.
    Called directly it would allocate an array of any size from a few bytes."""

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise _Refused("a direct call of numpy.ndarray is not allowed")


class _ArraysOnly(pickle.Unpickler):
    """Builds dict/list/bytes/str/int (native opcodes) and numpy arrays of plain bytes; nothing
    else. No array may be larger than `max_bytes`, the file's size: numpy's pickles carry every
    byte of their arrays, so a larger one was not written by numpy."""

    FROM_BUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}
    RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
    NDARRAY = _NdarrayType()

    def __init__(self, file, max_bytes: int):
        super().__init__(file, encoding="bytes")
        self.max_bytes = max_bytes

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) == ("numpy", "dtype"):
            return _plain_dtype
        if (module, name) == ("numpy", "ndarray"):
            return self.NDARRAY
        if (module, name) in self.RECONSTRUCT:
            return functools.partial(self._reconstruct, super().find_class(module, name))
        if (module, name) in self.FROM_BUFFER:
            return super().find_class(module, name)  # an array over bytes of the stream itself
        raise _Refused(f"global {module}.{name} is not allowed in a data file")

    def _reconstruct(self, reconstruct, subtype: object, shape: object, dtype: object) -> np.ndarray:
        """numpy's _reconstruct(ndarray, (0,), b"b"): an empty array that BUILD then fills."""
        if subtype is not self.NDARRAY:
            raise _Refused(f"_reconstruct of {type(subtype).__name__}, not numpy.ndarray")
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise _Refused(f"_reconstruct with shape {str(shape)[:40]}")
        if math.prod(shape) * _plain_dtype(dtype).itemsize > self.max_bytes:
            raise _Refused(f"an array of shape {shape}, larger than the {self.max_bytes}-byte file")
        return reconstruct(_CheckedArray, shape, dtype)


def read_batch(path: Path) -> dict:
    """One pickle batch as a dict; a DataSourceError for anything malformed or unsafe."""
    try:
        with open(path, "rb") as fh:
            batch = _ArraysOnly(fh, max_bytes=path.stat().st_size).load()
    except _Refused as exc:
        raise DataSourceError(f"{path}: refused pickle ({exc}); data files may hold only arrays and lists") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise DataSourceError(f"{path}: truncated or corrupt pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise DataSourceError(f"{path}: expected a dict, got {type(batch).__name__}")
    return {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}


def _checked_images(data: object, path: Path) -> np.ndarray:
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataSourceError(f"{path}: 'data' must be a (N, 3072) uint8 array, got {got}")
    return np.asarray(data).reshape(-1, 3, 32, 32)


def _checked_labels(labels: object, rows: int, path: Path, key: str) -> np.ndarray:
    """The labels as int64, checked before any conversion: np.asarray of a list that the pickle
    memo makes hold itself many times over would build billions of values."""
    wanted = f"{path}: {key!r} must be a flat list of {rows} integers"
    if isinstance(labels, np.ndarray):
        if labels.shape != (rows,) or labels.dtype.kind not in "iu":
            raise DataSourceError(f"{wanted} (got a {labels.dtype} array of shape {labels.shape})")
        return labels.astype(np.int64)
    if not isinstance(labels, list):
        raise DataSourceError(f"{wanted} (got a {type(labels).__name__})")
    if len(labels) != rows:
        raise DataSourceError(f"{wanted} (it has {len(labels)} items)")
    bad = next((i for i, v in enumerate(labels) if type(v) is not int), None)
    if bad is not None:
        raise DataSourceError(f"{wanted} (item {bad} is a {type(labels[bad]).__name__})")
    try:
        return np.array(labels, dtype=np.int64)
    except OverflowError:
        raise DataSourceError(f"{wanted} (a label does not fit in 64 bits)") from None


def _images_and_labels(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = read_batch(path)
    for key in (b"data", label_key):
        if key not in batch:
            raise DataSourceError(f"{path}: missing key {key.decode()!r}")
    images = _checked_images(batch[b"data"], path)
    labels = _checked_labels(batch[label_key], len(images), path, label_key.decode())
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        raise DataSourceError(f"{path}: label {int(labels[outside][0])} out of range [0, {num_classes})")
    return images, labels


def _num_classes(root: Path, meta: str, names_key: bytes, default: int) -> int:
    path = root / meta
    if not path.exists():
        return default  # the meta file only names the classes; the count is fixed by the variant
    names = read_batch(path).get(names_key)
    if not isinstance(names, list) or not names:
        raise DataSourceError(f"{path}: missing or empty {names_key.decode()!r}")
    if len(names) > MAX_CLASSES:
        raise DataSourceError(f"{path}: {names_key.decode()!r} names {len(names)} classes, "
                              f"more than the limit of {MAX_CLASSES}")
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
    keys = np.array([f"{f}:{row}" for f, p in zip(train_files + test_files, parts) for row in range(len(p[1]))],
                    dtype=object)
    return finish(x, y, str(root), num_classes=num_classes, published_test=test, keys=keys)


def load_cifar10(**kwargs: object) -> Source:
    return load_cifar("cifar10", **kwargs)


def load_cifar100(**kwargs: object) -> Source:
    return load_cifar("cifar100", **kwargs)
