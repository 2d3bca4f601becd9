"""CIFAR batches in the original pickle format load; unsafe or broken pickles are refused."""
import os
import pickle

import numpy as np
import pytest

from refinery.data import DataSourceError, TEST, load_source, stratified_split


def write_cifar10(root, n=6, protocol=2, labels=None):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for f in files:
        batch = {b"batch_label": f.encode(), b"labels": list(labels or rng.integers(0, 10, n).tolist()),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"{i}.png".encode() for i in range(n)]}
        (root / f).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_cases_per_batch": n}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return root


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_loads_with_published_test_split(tmp_path, protocol):
    root = write_cifar10(tmp_path / "cifar-10-batches-py", protocol=protocol)
    raw = pickle.loads((root / "data_batch_2").read_bytes())
    src = load_source("cifar10", path=root)
    assert src.x.shape == (36, 3, 32, 32) and src.x.dtype == np.float32 and src.num_classes == 10
    # channel-first layout: the first 1024 bytes are the red plane of image 0
    assert np.allclose(src.x[6, 0].ravel() * 255, raw[b"data"][0, :1024])
    assert src.published_test.sum() == 6 and src.published_test[-6:].all()
    split = stratified_split(src.y, 0.1, 0.2, seed=0, published_test=src.published_test)
    assert np.array_equal(split == TEST, src.published_test)


def test_cifar100_fine_labels_and_resize(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(1)
    for f, n in (("train", 8), ("test", 4)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"fine_labels": rng.integers(0, 100, n).tolist(), b"coarse_labels": [0] * n}
        (root / f).write_bytes(pickle.dumps(batch, protocol=2))
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"x"] * 100}, protocol=2))
    src = load_source("cifar100", path=root, resize=(16, 16))
    assert src.x.shape == (12, 3, 16, 16) and src.num_classes == 100


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_with_foreign_globals_is_refused(tmp_path):
    root = write_cifar10(tmp_path / "c")
    (root / "data_batch_3").write_bytes(pickle.dumps({b"data": Boom()}))
    with pytest.raises(DataSourceError, match=r"data_batch_3: refused.*system"):
        load_source("cifar10", path=root)


def test_truncated_pickle_names_the_file(tmp_path):
    root = write_cifar10(tmp_path / "c")
    blob = (root / "test_batch").read_bytes()
    (root / "test_batch").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataSourceError, match=r"test_batch: truncated or corrupt"):
        load_source("cifar10", path=root)


def test_labels_out_of_range_and_missing_files(tmp_path):
    root = write_cifar10(tmp_path / "c", labels=[0, 1, 2, 3, 4, 10])
    with pytest.raises(DataSourceError, match=r"data_batch_1: label 10 out of range \[0, 10\)"):
        load_source("cifar10", path=root)
    (root / "data_batch_4").unlink()
    with pytest.raises(DataSourceError, match="missing cifar10 batch file.*data_batch_4"):
        load_source("cifar10", path=root)
    with pytest.raises(DataSourceError, match="not found"):
        load_source("cifar10", path=tmp_path / "nowhere")
