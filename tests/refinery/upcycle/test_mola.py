"""MoLA: frozen dense FFN + LoRA experts, a router per adapted linear on that linear's own
input, equal to dense at step 0, balance loss off by default, trainable count by formula."""
from __future__ import annotations

import pytest
import torch

from refinery.models import build_model, count_params, routed_layers
from refinery.models.lora import LoRAExpertLinear, LoRAFFN
from refinery.train import fit
from refinery.upcycle import get_recipe
from refinery.upcycle.mola import layer_counts, trainable_count

from .conftest import small_config


def test_step0_equals_dense(teacher, digits):
    dense, arch = teacher
    made = get_recipe("mola")(dense, arch, small_config(recipe="mola", mola_experts=[2, 6]))
    for layer in routed_layers(made.model):
        with torch.no_grad():
            layer.router.weight.normal_(std=3.0)
    x = digits.test.x[:64]
    with torch.no_grad():
        torch.testing.assert_close(made.model.eval()(x), dense(x), atol=1e-5, rtol=1e-5)


def test_trainable_params_equal_the_formula(teacher):
    dense, arch = teacher
    made = get_recipe("mola")(dense, arch, small_config(recipe="mola", mola_experts=[2, 4, 6, 8], lora_rank=8))
    counts = made.arch["moe"]["num_experts"]
    assert counts == [2, 6]  # four groups sampled over two layers
    dim, hidden = 16, 32
    expected = trainable_count(counts, dim, hidden, rank=8)
    assert expected == sum(e * (2 * 8 * (dim + hidden) + dim + hidden) for e in counts)
    assert sum(p.numel() for p in made.params) == expected
    assert count_params(made.model, trainable_only=True) == expected
    assert all(isinstance(m, LoRAExpertLinear) for m in routed_layers(made.model))


def test_one_router_per_adapted_linear_fed_its_own_input():
    torch.manual_seed(0)
    dim, hidden, experts = 6, 10, 4
    ffn = LoRAFFN(dim, hidden, experts, top_k=1)
    assert [m.router.weight.shape for m in routed_layers(ffn)] == [(experts, dim), (experts, hidden)]
    with torch.no_grad():
        for layer in routed_layers(ffn):
            layer.router.weight.normal_(std=3.0)
            for b in layer.b:
                b.normal_()
    seen = {}
    for name, layer in (("fc1", ffn.fc1), ("fc2", ffn.fc2)):
        layer.register_forward_pre_hook(lambda mod, args, name=name: seen.__setitem__(name, args[0].detach()))
        layer.reset_stats(track=True)
    with torch.no_grad():
        ffn(torch.randn(200, dim))
    for name, layer in (("fc1", ffn.fc1), ("fc2", ffn.fc2)):
        expected = (seen[name] @ layer.router.weight.t()).argmax(-1)
        assert torch.equal(layer.stats["top1"][0].long(), expected), name


def test_balance_loss_is_off_by_default(teacher, digits):
    dense, arch = teacher
    x = digits.test.x[:64]
    made = get_recipe("mola")(dense, arch, small_config(recipe="mola", mola_experts=[2, 4]))
    with torch.no_grad():
        made.model(x)
    assert made.arch["moe"]["aux_coef"] == 0.0
    assert all(float(m.aux_loss) == 0.0 for m in routed_layers(made.model))
    on = get_recipe("mola")(dense, arch, small_config(recipe="mola", mola_experts=[2, 4], mola_balance=True))
    with torch.no_grad():
        on.model(x)
    assert on.arch["moe"]["aux_coef"] == 1e-3
    assert all(float(m.aux_loss) > 0.0 for m in routed_layers(on.model))


def test_layer_counts_spread_groups_over_depth():
    assert layer_counts([2, 4, 6, 8], 4) == [2, 4, 6, 8]
    assert layer_counts([2, 4], 4) == [2, 2, 4, 4]
    assert layer_counts([4], 3) == [4, 4, 4]


def test_lora_experts_learn_and_rebuild(teacher, digits):
    dense, arch = teacher
    made = get_recipe("mola")(dense, arch, small_config(recipe="mola", mola_experts=[2, 4]))
    fit(made.model, digits.train, small_config().train, seed=0, params=made.params, hooks=None)
    x = digits.test.x[:32]
    with torch.no_grad():
        assert not torch.allclose(made.model(x), dense(x))
        rebuilt = build_model(made.arch)
        rebuilt.load_state_dict(made.model.state_dict())
        torch.testing.assert_close(rebuilt.eval()(x), made.model(x))


def test_top_k_must_fit_every_layer():
    with pytest.raises(ValueError, match="mola_experts"):
        small_config(recipe="mola", mola_experts=[1, 4])
