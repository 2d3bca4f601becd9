"""Splits are deterministic and stratified; forget requests are validated."""
import numpy as np
import pytest

from refinery.data import (TEST, TRAIN, VAL, DataSourceError, ForgetRequestError, choose_test_split, load_prepared,
                           load_source, resolve_request, stratified_split)
from refinery.store import read_arrays


def test_split_is_deterministic_and_seed_dependent():
    y = load_source("digits").y
    a, b = stratified_split(y, 0.1, 0.2, seed=0), stratified_split(y, 0.1, 0.2, seed=0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, stratified_split(y, 0.1, 0.2, seed=1))


def test_split_is_stratified_and_disjoint():
    y = load_source("digits").y
    split = stratified_split(y, 0.1, 0.2, seed=0)
    assert set(np.unique(split)) == {TRAIN, VAL, TEST}
    for c in np.unique(y):
        members = split[y == c]
        assert abs((members == TEST).mean() - 0.2) < 0.02
        assert abs((members == VAL).mean() - 0.1) < 0.02


def test_mnist1d_published_split_keeps_its_test_set():
    src = load_source("mnist1d", n_samples=1000)
    split = stratified_split(src.y, 0.1, 0.2, seed=0, published_test=src.published_test)
    assert np.array_equal(split == TEST, src.published_test)
    assert src.x.shape == (1000, 1, 40)


def test_forget_requests():
    y = np.array([0, 1, 2, 3] * 10)
    train = np.ones(40, dtype=bool)
    train[:4] = False
    assert set(y[resolve_request("classes", y=y, train_mask=train, seed=0, classes=[3])]) == {3}
    ids = resolve_request("fraction", y=y, train_mask=train, seed=0, fraction=0.25)
    assert len(ids) == 9 and train[ids].all()
    with pytest.raises(ForgetRequestError, match="duplicate"):
        resolve_request("ids", y=y, train_mask=train, seed=0, ids=np.array([5, 5]))
    with pytest.raises(ForgetRequestError, match="not in the training split"):
        resolve_request("ids", y=y, train_mask=train, seed=0, ids=np.array([0]))
    with pytest.raises(ForgetRequestError, match="every training sample"):
        resolve_request("ids", y=y, train_mask=train, seed=0, ids=np.arange(4, 40))
    with pytest.raises(ForgetRequestError, match="unknown class"):
        resolve_request("classes", y=y, train_mask=train, seed=0, classes=[9])


def test_auto_split_takes_a_sources_own_test_split():
    mask = np.array([False, False, True, True])
    mode, test = choose_test_split("auto", mask, "user.npz")
    assert mode == "published" and test is mask
    assert choose_test_split("auto", None, "digits") == ("stratified", None)
    assert choose_test_split("stratified", mask, "user.npz") == ("stratified", None)
    assert choose_test_split("published", mask, "user.npz")[0] == "published"
    with pytest.raises(DataSourceError, match="user.npz: data.split 'published' needs a test split"):
        choose_test_split("published", None, "user.npz")


def test_default_config_splits_each_source_as_it_comes(tmp_path):
    """With no data.split given, prepare keeps CIFAR's test_batch as the test set, an npz's
    x_test/y_test likewise, and carves a stratified test set from digits."""
    import yaml

    from refinery import config as C
    from tasks.common import Workspace
    from tasks.prepare import prepare
    from tests.refinery.data.test_cifar import write_cifar10

    assert C.validate({}).data.split == "auto"
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "user.npz", x=rng.normal(size=(60, 1, 12)), y=np.arange(60) % 3,
             x_test=rng.normal(size=(9, 1, 12)), y_test=np.arange(9) % 3)
    write_cifar10(tmp_path / "cifar", n=20, labels=[i % 10 for i in range(20)])
    cases = {"cifar10": ({"source": "cifar10", "path": "cifar"}, 20, "published"),
             "npz": ({"source": "npz", "path": "user.npz"}, 9, "published"),
             "digits": ({"source": "digits"}, 359, "stratified")}  # round(0.2 n_c) per class
    for name, (data, n_test, mode) in cases.items():
        root = tmp_path / name
        root.mkdir()
        (root / "dvc.yaml").write_text("stages: {}\n")
        for f in ("cifar", "user.npz"):
            (root / f).symlink_to(tmp_path / f)
        cfg = C.validate({"data": data, "forget": {"mode": "fraction", "fraction": 0.1}})
        (root / "params.yaml").write_text(yaml.safe_dump(C.to_dict(cfg)))
        ws = Workspace(root)
        prepare(ws)
        arrays = ws.stage_dir("prepare") / "arrays.zarr"
        assert len(load_prepared(arrays).test) == n_test, name
        assert read_arrays(arrays, [])[1]["split"] == mode, name
