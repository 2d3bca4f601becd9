"""MoE++: zero/copy experts are free, W_g = 0 is a vanilla MoE, tokens skip FFN experts."""
from __future__ import annotations

import torch

from refinery.models.moe import MoE
from refinery.models.moepp import MoEPlusPlus, link_gating_residuals
from refinery.upcycle import get_recipe
from refinery.train import Hooks, cross_entropy_loss, fit

from .conftest import small_config


def _params(layer: MoEPlusPlus) -> int:
    return sum(p.numel() for p in layer.parameters())


def test_zero_and_copy_experts_have_no_parameters():
    base = MoEPlusPlus(8, 16, 4, 2, num_zero=0, num_copy=0, num_constant=0)
    more = MoEPlusPlus(8, 16, 4, 2, num_zero=3, num_copy=2, num_constant=0)
    routed_extra = lambda layer: layer.router.weight.numel() + layer.gate_residual.weight.numel()  # noqa: E731
    assert _params(more) - routed_extra(more) == _params(base) - routed_extra(base)
    const = MoEPlusPlus(8, 16, 4, 2, num_zero=0, num_copy=0, num_constant=1)
    assert _params(const) - routed_extra(const) - (_params(base) - routed_extra(base)) == 3 * 8  # W_c (2 x d) + v


def test_zero_gate_residual_gives_a_vanilla_moe():
    torch.manual_seed(0)
    first, second = (MoEPlusPlus(8, 16, 4, 2, num_zero=0, num_copy=0, num_constant=0) for _ in range(2))
    link_gating_residuals([first, second])
    vanilla = MoE(8, 16, 4, 2)
    vanilla.load_state_dict({k: v for k, v in second.state_dict().items() if k in vanilla.state_dict()})
    x = torch.randn(30, 8)
    first(x)  # leaves its logits for the second layer
    torch.testing.assert_close(second(x), vanilla(x))
    with torch.no_grad():
        second.gate_residual.weight.normal_()
    first(x)
    assert not torch.allclose(second(x), vanilla(x))  # the residual is really wired in


def test_sorted_matches_loop_with_zero_computation_experts():
    torch.manual_seed(0)
    layer = MoEPlusPlus(8, 16, 3, 2, num_zero=1, num_copy=1, num_constant=1)
    with torch.no_grad():
        layer.router.weight.normal_()
    x = torch.randn(40, 8)
    ys = layer(x)
    layer.dispatch = "loop"
    torch.testing.assert_close(ys, layer(x), atol=1e-5, rtol=1e-5)


def test_fewer_than_k_ffn_experts_per_token(teacher, digits):
    dense, arch = teacher
    made = get_recipe("moepp")(dense, arch, small_config(recipe="moepp"))
    fit(made.model, digits.train, small_config().train, seed=0, params=made.params,
        hooks=Hooks(loss=cross_entropy_loss(0.1)))
    layers = [m for m in made.model.modules() if isinstance(m, MoEPlusPlus)]
    for layer in layers:
        layer.reset_stats(track=True)
    with torch.no_grad():
        made.model.eval()(digits.test.x)
    per_token = [layer.summary()["ffn_experts_per_token"] for layer in layers]
    assert all(0 < v < 2 for v in per_token), per_token
