"""PHATGOOSE: independent experts, gate vectors, LayerNorm-style scores scaled by sqrt(1/d),
top-k routing that beats uniform averaging where the experts specialise."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from refinery.config import TrainConfig
from refinery.data.dataset import Arrays
from refinery.models import build_model
from refinery.models.blocks import FeedForward
from refinery.models.lora import GateVectorLoRAFFN, GateVectorLoRALinear
from refinery.upcycle import get_recipe
from refinery.upcycle.phatgoose import gated_layers, set_mode, train_experts

from .conftest import small_config


def test_routing_is_trained_and_compared_with_uniform(teacher, digits):
    dense, arch = teacher
    made = get_recipe("phatgoose")(dense, arch, small_config(recipe="phatgoose", expert_epochs=2), digits, 0)
    assert made.params == []  # nothing trains jointly
    layers = gated_layers(made.model)
    assert len(layers) == 4 and all(m.mode == "route" for m in layers)  # fc1 and fc2 of two blocks
    assert all(float(v.abs().sum()) > 0 for m in layers for v in m.router)  # every gate trained
    scores = made.evaluate(made.model, digits)
    assert set(scores) == {"uniform_test_acc", "routed_test_acc"}
    rebuilt = build_model(made.arch)
    rebuilt.load_state_dict(made.model.state_dict())
    x = digits.test.x[:16]
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), made.model(x))


def test_training_one_expert_touches_nothing_else(teacher, digits):
    dense, arch = teacher
    cfg = small_config(recipe="phatgoose", num_experts=2, expert_epochs=1)
    made = get_recipe("phatgoose")(dense, arch, cfg, digits, 0)
    before = {k: v.clone() for k, v in made.model.state_dict().items()}
    first = digits.train.subset(digits.train.y < 5)
    train_experts(made.model, [first], small_config(expert_epochs=1))  # expert 0 and its gates only
    after = made.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("a.0", "b.0", "router.0")) for k in changed), sorted(changed)


def test_scores_are_layernormed_and_scaled_by_one_over_sqrt_d():
    torch.manual_seed(0)
    d = 32
    layer = GateVectorLoRALinear(d, 8, 4, 2)
    with torch.no_grad():
        for v in layer.router:
            v.copy_(1.0 + 1e-3 * torch.randn(d))  # tiny spread: LayerNorm's eps 1e-5 matters
    x = torch.randn(10, d)
    v = torch.stack(list(layer.router)).detach()

    def ln(t):  # biased variance, eps 1e-5
        return (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(layer.router_logits(x), ln(x) @ ln(v).t() / math.sqrt(d))
    # Tiling input and gate vectors 4x leaves each standardised entry as it was, so the dot
    # product grows 4x and the score, scaled by sqrt(1/d), exactly 2x.
    wide = GateVectorLoRALinear(4 * d, 8, 4, 2)
    with torch.no_grad():
        for narrow_v, wide_v in zip(layer.router, wide.router):
            wide_v.copy_(narrow_v.repeat(4))
    torch.testing.assert_close(wide.router_logits(x.repeat(1, 4)), 2 * layer.router_logits(x), atol=1e-4, rtol=1e-4)


def _specialised_data(groups: int, dim: int, per_group: int, seed: int):
    """Group g: inputs around a random centre; targets from a teacher whose expert g alone is active."""
    gen = torch.Generator().manual_seed(seed)
    teacher = GateVectorLoRAFFN.from_ffn(FeedForward(dim, 2 * dim), groups, 2, rank=4, scale=1.0)
    with torch.no_grad():
        for layer in (teacher.fc1, teacher.fc2):
            for b in layer.b:
                b.copy_(torch.randn(b.shape, generator=gen))
    centres = 2 * dim ** 0.5 * torch.linalg.qr(torch.randn(dim, dim, generator=gen))[0][:groups]  # orthogonal
    xs, ys = [], []
    for g in range(groups):
        x = centres[g] + 0.5 * torch.randn(per_group, dim, generator=gen)
        set_mode(teacher, "expert", g)
        with torch.no_grad():
            ys.append(teacher(x))
        xs.append(x)
    return teacher, xs, ys


def test_routing_beats_uniform_averaging_when_experts_specialise():
    torch.manual_seed(0)
    groups, dim = 4, 8
    teacher, xs, ys = _specialised_data(groups, dim, 96, seed=1)
    student = GateVectorLoRAFFN(dim, 2 * dim, groups, 2, rank=4, scale=1.0)
    for mine, theirs in ((student.fc1, teacher.fc1), (student.fc2, teacher.fc2)):
        mine.base.load_state_dict(theirs.base.state_dict())
    subsets = [Arrays(x[:64], y[:64], torch.arange(64)) for x, y in zip(xs, ys)]
    cfg = small_config(expert_epochs=20, train=TrainConfig(epochs=1, batch_size=32, lr=3e-2, weight_decay=0.0,
                                                          schedule="constant"))
    train_experts(student, subsets, cfg, seed=0, loss=lambda m, x, y, ids, at=None: F.mse_loss(m(x), y))
    x_test, y_test = torch.cat([x[64:] for x in xs]), torch.cat([y[64:] for y in ys])
    errors = {}
    for mode in ("route", "uniform"):
        set_mode(student, mode)
        with torch.no_grad():
            errors[mode] = float(F.mse_loss(student(x_test), y_test))
    assert errors["route"] < 0.5 * errors["uniform"], errors
