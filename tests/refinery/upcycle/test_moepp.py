"""MoE++: zero/copy experts are free, the zero expert only saves compute (its gate is dropped
before renormalising), W_g = 0 is a vanilla MoE, skipped FFN work is counted."""
from __future__ import annotations

import pytest
import torch

from refinery.models import build_model
from refinery.models.moe import MoE
from refinery.models.moepp import MoEPlusPlus, link_gating_residuals
from refinery.train import Hooks, cross_entropy_loss, fit
from refinery.upcycle import get_recipe

from .conftest import small_config

VANILLA = {"router": "linear", "scale_inputs": False, "residual_init": "zero"}


def _params(layer: MoEPlusPlus) -> int:
    routing = sum(p.numel() for p in layer.router.parameters()) + layer.gate_residual.weight.numel()
    return sum(p.numel() for p in layer.parameters()) - routing


def test_zero_and_copy_experts_have_no_parameters():
    base = MoEPlusPlus(8, 16, 4, 2, num_zero=0, num_copy=0, num_constant=0)
    more = MoEPlusPlus(8, 16, 4, 2, num_zero=3, num_copy=2, num_constant=0)
    assert _params(more) == _params(base)
    const = MoEPlusPlus(8, 16, 4, 2, num_zero=0, num_copy=0, num_constant=1)
    assert _params(const) - _params(base) == 3 * 8  # W_c (2 x d) + v


def test_reference_router_is_two_layer_tanh():
    layer = MoEPlusPlus(8, 16, 4, 2)  # R = 4 + 1 zero + 1 copy + 2 constant = 8
    assert [tuple(m.weight.shape) for m in layer.router if isinstance(m, torch.nn.Linear)] == [(64, 8), (8, 64)]
    x = torch.randn(5, 8)
    w1, w2 = layer.router[0].weight, layer.router[2].weight
    torch.testing.assert_close(layer.router_logits(x), torch.tanh(x @ w1.t()) @ w2.t())
    assert layer.router_flops() == 2 * 8 * 64 + 2 * 64 * 8


@pytest.mark.parametrize("scale_inputs", [True, False])
def test_token_routed_to_zero_and_ffn_outputs_exactly_the_ffn_expert(scale_inputs):
    torch.manual_seed(0)
    layer = MoEPlusPlus(8, 16, 2, 2, num_zero=1, num_copy=1, num_constant=0, router="linear",
                        scale_inputs=scale_inputs)
    with torch.no_grad():  # targets: FFN 0, FFN 1, zero, copy; x > 0 picks FFN 0 and zero, equally
        layer.router.weight.copy_(torch.tensor([1.0, -1.0, 1.0, -1.0]).view(4, 1).expand(4, 8))
    x = torch.rand(30, 8) + 0.1
    weights, idx = layer.route(x)
    assert set(idx.flatten().tolist()) == {0, 2}
    scale = 2 if scale_inputs else 1
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer._expert(0, scale * x), atol=1e-6, rtol=1e-6)


def test_only_zero_experts_chosen_gives_zero_output():
    layer = MoEPlusPlus(8, 16, 1, 2, num_zero=2, num_copy=0, num_constant=0, router="linear")
    with torch.no_grad():
        layer.router.weight.copy_(torch.tensor([-1.0, 1.0, 1.0]).view(3, 1).expand(3, 8))
    out = layer(torch.rand(6, 8) + 0.1)
    assert torch.isfinite(out).all() and torch.all(out == 0)


def test_zero_gate_residual_gives_a_vanilla_moe():
    torch.manual_seed(0)
    first, second = (MoEPlusPlus(8, 16, 4, 2, num_zero=0, num_copy=0, num_constant=0, **VANILLA) for _ in range(2))
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
        layer.router[2].weight.normal_()
    x = torch.randn(40, 8)
    ys = layer(x)
    layer.dispatch = "loop"
    torch.testing.assert_close(ys, layer(x), atol=1e-5, rtol=1e-5)


def test_ffn_experts_per_token_counts_only_ffn_work():
    """Tokens with x_0 > 0 go to (zero, copy), the others to (FFN 0, FFN 1): exactly one FFN
    expert per token on average, and exactly k for a layer without zero-computation experts."""
    layer = MoEPlusPlus(4, 8, 2, 2, num_zero=1, num_copy=1, num_constant=0, router="linear")
    plain = MoEPlusPlus(4, 8, 2, 2, num_zero=0, num_copy=0, num_constant=0, router="linear")
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[:, 0] = torch.tensor([-5.0, -5.0, 5.0, 5.0])
    x = torch.randn(200, 4)
    x[:, 0] = torch.where(torch.arange(200) % 2 == 0, 1.0, -1.0)
    for m in (layer, plain):
        m.reset_stats(track=True)
        with torch.no_grad():
            m(x)
    assert layer.summary()["ffn_experts_per_token"] == pytest.approx(1.0)
    assert plain.summary()["ffn_experts_per_token"] == pytest.approx(2.0)


def test_recipe_trains_and_rebuilds(teacher, digits):
    dense, arch = teacher
    made = get_recipe("moepp")(dense, arch, small_config(recipe="moepp"))
    assert made.arch["moe"]["num_constant"] == 2 and made.arch["moe"]["router"] == "two_layer"
    fit(made.model, digits.train, small_config().train, seed=0, params=made.params,
        hooks=Hooks(loss=cross_entropy_loss(0.1)))
    rebuilt = build_model(made.arch)
    rebuilt.load_state_dict(made.model.state_dict())
    x = digits.test.x[:16]
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), made.model.eval()(x))
