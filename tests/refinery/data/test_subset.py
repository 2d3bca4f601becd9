"""stratified_subset: a seeded, class-stratified fraction of a split (distill.train_fraction)."""
import numpy as np
import pytest
import torch

from refinery.data import Arrays, stratified_subset


def arrays(counts=(50, 30, 7, 1)) -> Arrays:
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    y = np.random.default_rng(123).permutation(y)
    x = np.arange(len(y), dtype=np.float32).reshape(-1, 1)
    return Arrays.from_numpy(x, y, ids=np.arange(100, 100 + len(y)))


def test_keeps_round_fraction_of_each_class_at_least_one():
    full = arrays()
    part = stratified_subset(full, 0.3, seed=0)
    counts = np.bincount(part.y.numpy(), minlength=4)
    assert counts.tolist() == [15, 9, 2, 1]  # round(0.3 * n), at least 1 for the singleton class
    # the samples keep their own x, y and id, in the split's order
    assert torch.equal(part.ids, torch.sort(part.ids).values)
    assert set(part.ids.tolist()) <= set(full.ids.tolist())
    rows = part.ids - 100
    assert torch.equal(part.y, full.y[rows]) and torch.equal(part.x, full.x[rows])


def test_same_seed_same_samples_other_seed_others():
    full = arrays()
    a, b = stratified_subset(full, 0.5, seed=7), stratified_subset(full, 0.5, seed=7)
    assert torch.equal(a.ids, b.ids)
    assert not torch.equal(a.ids, stratified_subset(full, 0.5, seed=8).ids)


def test_fraction_one_is_the_whole_split_in_order():
    full = arrays()
    whole = stratified_subset(full, 1.0, seed=3)
    assert torch.equal(whole.ids, full.ids) and torch.equal(whole.y, full.y) and torch.equal(whole.x, full.x)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_fraction_outside_unit_interval_is_refused(fraction):
    with pytest.raises(ValueError, match="fraction"):
        stratified_subset(arrays(), fraction, seed=0)
