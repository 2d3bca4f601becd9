import numpy as np
import torch

from refinery.config import SISAConfig, TrainConfig, UnlearnConfig
from refinery.models import build_model
from refinery.unlearn import run_method
from refinery.unlearn.sisa import (SISAEnsemble, assignment, delete, deploy, load_deployment, save_deployment)

from .helpers import random_forget_ids


def _recipe():
    return TrainConfig(epochs=2, batch_size=64, lr=1e-2, weight_decay=0.01)


def test_assignment_depends_only_on_seed_and_id():
    ids = np.arange(500)
    k, r = assignment(ids, 0, 3, 4)
    k2, r2 = assignment(ids[::7], 0, 3, 4)
    assert np.array_equal(k[::7], k2) and np.array_equal(r[::7], r2)
    assert set(k.tolist()) == {0, 1, 2} and set(r.tolist()) == {0, 1, 2, 3}
    assert not np.array_equal(k, assignment(ids, 1, 3, 4)[0])


def test_deletion_is_bit_identical_to_training_from_scratch_without_the_samples(digits, arch):
    train, test = digits
    forget = random_forget_ids(train, n=3, seed=5)
    retain = train.without(forget)
    deployed = deploy(arch, train, _recipe(), 0, shards=3, slices=3)
    after = delete(deployed, retain, forget, _recipe(), 0)
    scratch = deploy(arch, retain, _recipe(), 0, shards=3, slices=3)
    with torch.no_grad():
        assert torch.equal(after.model(test.x), scratch.model(test.x))
        assert not torch.equal(deployed.model(test.x), scratch.model(test.x))
    # only the members whose shard held a deleted sample were retrained
    touched = set(assignment(forget, 0, 3, 3)[0].tolist())
    for k in range(3):
        same = all(torch.equal(a, b) for a, b in zip(after.model.members[k].state_dict().values(),
                                                     deployed.model.members[k].state_dict().values()))
        assert same == (k not in touched)


def test_ensemble_averages_softmax_and_round_trips_without_pickle(digits, arch, tmp_path):
    train, test = digits
    deployed = deploy(arch, train.subset(np.arange(len(train)) < 300), _recipe(), 0, shards=2, slices=2)
    probs = torch.stack([m(test.x).softmax(-1) for m in deployed.model.members]).mean(0)
    torch.testing.assert_close(deployed.model(test.x).softmax(-1), probs)
    save_deployment(tmp_path / "sisa.zarr", deployed)
    loaded = load_deployment(tmp_path / "sisa.zarr")
    assert torch.equal(loaded.model(test.x), deployed.model(test.x))
    rebuilt = build_model(deployed.arch)  # the arch record alone rebuilds the ensemble
    assert isinstance(rebuilt, SISAEnsemble) and len(rebuilt.members) == 2


def test_registered_method_returns_an_ensemble(make_ctx, digits):
    cfg = UnlearnConfig(sisa=SISAConfig(shards=2, slices=2))
    ctx = make_ctx(random_forget_ids(digits[0], n=5), train_cfg=_recipe(), cfg=cfg)
    out = run_method("sisa", ctx)
    assert isinstance(out, SISAEnsemble) and out.arch["ensemble"] == {"kind": "sisa", "shards": 2, "slices": 2}
