"""Splits are deterministic and stratified; forget requests are validated."""
import numpy as np
import pytest

from refinery.data import TEST, TRAIN, VAL, ForgetRequestError, load_source, resolve_request, stratified_split


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
