"""Hostile or absurd data files stop at once with one DataSourceError line naming the file and
the problem, before anything sized by them is built: a label that implies a million classes, and
a tiny CIFAR batch whose pickle memo makes one label list stand for billions of values."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from refinery.data import DataSourceError, load_source
from tests.reliability.test_hostile_config import bounded

MAX_CLASSES = 10_000  # refinery.data.base.MAX_CLASSES: more class ids than this is a broken label column


# --------------------------------------------------------------------------- label bounds (npz, parquet)
def write_npz(path, y):
    np.savez(path, x=np.zeros((len(y), 1, 4), dtype=np.float32), y=np.asarray(y))
    return path


def write_parquet(path, y):
    pd.DataFrame({"image": [[0.0, 1.0, 2.0, 3.0]] * len(y), "label": y}).to_parquet(path)
    return path


WRITERS = {"npz": write_npz, "parquet": write_parquet}
LABELS = 200 * [0, 1]


@pytest.mark.parametrize("source", WRITERS)
@pytest.mark.parametrize("bad,problem", [
    (1_000_000, f"label 1000000 (sample 7) exceeds the limit of {MAX_CLASSES} classes"),
    (1000, "label 1000 (sample 7) implies 1001 classes for 400 samples"),
    (-1, "label -1 out of range [0, 2) (sample 7)"),
])
def test_labels_outside_sane_class_ids_are_refused(tmp_path, source, bad, problem):
    labels = list(LABELS)
    labels[7] = bad
    path = WRITERS[source](tmp_path / f"hostile.{source}", labels)
    with pytest.raises(DataSourceError) as caught:
        load_source(source, path=path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)) and problem in message, message


def test_non_integer_float_label_is_refused(tmp_path):
    path = write_npz(tmp_path / "hostile.npz", [0.0, 1.0] * 50 + [1.5])
    with pytest.raises(DataSourceError, match=r"hostile.npz:y: labels must be integers \(found 1.5\)"):
        load_source("npz", path=path)


def test_huge_float_label_is_refused_before_the_int_cast(tmp_path):
    path = write_npz(tmp_path / "hostile.npz", [0.0, 1.0] * 50 + [1e30])
    with pytest.raises(DataSourceError, match=r"hostile.npz:y: label 1e\+30 \(sample 100\) exceeds the limit"):
        load_source("npz", path=path)


def test_sane_labels_still_load(tmp_path):
    src = load_source("npz", path=write_npz(tmp_path / "ok.npz", [0, 1, 2, 3] * 5))
    assert src.num_classes == 4 and len(src.y) == 20


# --------------------------------------------------------------------------- CIFAR batches
def write_cifar10(root, rows: int = 2) -> None:
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.zeros((rows, 3072), dtype=np.uint8), b"labels": [0, 1] * (rows // 2)}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))


def shared_nested_list(depth: int = 9, width: int = 8) -> list:
    """A list that pickles to a few hundred bytes (the memo stores each level once) but holds
    width**depth integers once flattened."""
    level: list = [0] * width
    for _ in range(depth - 1):
        level = [level] * width
    return level


def test_cifar_labels_as_a_shared_nested_list_are_refused_fast(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    batch = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [shared_nested_list()] * 2}
    (root / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    assert (root / "data_batch_1").stat().st_size < 7_000
    raised, message = bounded(lambda: load_source("cifar10", path=root), seconds=10)
    assert raised == "DataSourceError", message
    assert message == f"{root / 'data_batch_1'}: 'labels' must be a flat list of 2 integers (item 0 is a list)"


@pytest.mark.parametrize("labels,problem", [
    ([0, 1, 2], "'labels' must be a flat list of 2 integers (it has 3 items)"),
    ([0, True], "'labels' must be a flat list of 2 integers (item 1 is a bool)"),
    ([0, 1.0], "'labels' must be a flat list of 2 integers (item 1 is a float)"),
    ({0: 1}, "'labels' must be a flat list of 2 integers (got a dict)"),
])
def test_cifar_labels_of_the_wrong_shape_or_type_are_refused(tmp_path, labels, problem):
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}))
    with pytest.raises(DataSourceError) as caught:
        load_source("cifar10", path=root)
    assert str(caught.value) == f"{root / 'test_batch'}: {problem}"


def test_cifar_data_must_be_uint8(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072)), b"labels": [0, 1]}))
    with pytest.raises(DataSourceError, match=r"test_batch: 'data' must be a \(N, 3072\) uint8 array, got float64"):
        load_source("cifar10", path=root)


class HugeArray:
    """Pickles as a call of numpy.ndarray itself with a shape of 2**40 bytes: a 70-byte file that
    asks the loader to allocate a terabyte."""

    def __reduce__(self):
        return (np.ndarray, ((2**40,), np.dtype("uint8")))


class HugeEmptyArray:
    """Pickles as numpy's _reconstruct(ndarray, shape, ...) with a shape of 2**40 bytes (numpy
    itself writes (0,) and then fills the array from bytes in the stream)."""

    def __reduce__(self):
        return (np.zeros(1).__reduce__()[0], (np.ndarray, (2**40,), b"b"))


@pytest.mark.parametrize("hostile", [HugeArray, HugeEmptyArray])
def test_cifar_array_larger_than_its_file_is_refused(tmp_path, hostile):
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "test_batch").write_bytes(pickle.dumps({b"data": hostile(), b"labels": [0, 1]}, protocol=2))
    raised, message = bounded(lambda: load_source("cifar10", path=root), seconds=10)
    assert raised == "DataSourceError", message
    assert message.startswith(f"{root / 'test_batch'}: ") and "\n" not in message, message


class ObjectArray:
    """Pickles as numpy's own recipe (_reconstruct, then BUILD) for an object array of 10**9 items
    filled from a one-item list, which numpy accepts without checking the length."""

    def __reduce__(self):
        reconstruct = np.zeros(1).__reduce__()[0]
        return (reconstruct, (np.ndarray, (0,), b"b"), (1, (10**9,), np.dtype(object), False, [1]))


def test_cifar_object_array_is_refused(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": ObjectArray()}))
    raised, message = bounded(lambda: load_source("cifar10", path=root), seconds=10)
    assert raised == "DataSourceError", message
    assert message.startswith(f"{root / 'test_batch'}: refused pickle (object arrays are not allowed"), message


def test_meta_naming_more_classes_than_the_limit_is_refused(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"x"] * (MAX_CLASSES + 1)}))
    with pytest.raises(DataSourceError, match=f"batches.meta: 'label_names' names {MAX_CLASSES + 1} classes"):
        load_source("cifar10", path=root)
