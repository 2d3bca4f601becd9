"""The MoE layer: sorted dispatch against the plain loop, losses, statistics."""
from __future__ import annotations

import copy

import pytest
import torch

from refinery.models.moe import MoE, expert_affinity


def _grads(moe: MoE, x: torch.Tensor, dispatch: str):
    moe = copy.deepcopy(moe)
    moe.dispatch = dispatch
    x = x.clone().requires_grad_(True)
    y = moe(x)
    loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() + moe.aux_loss
    loss.backward()
    return y.detach(), x.grad, {n: p.grad for n, p in moe.named_parameters()}


@pytest.mark.parametrize("capacity", [None, 0.75])
@pytest.mark.parametrize("top_k", [1, 2])
def test_sorted_matches_loop_outputs_and_gradients(capacity, top_k):
    torch.manual_seed(0)
    moe = MoE(16, 32, num_experts=4, top_k=top_k, capacity_factor=capacity)
    with torch.no_grad():
        moe.router.weight.normal_(std=1.0)  # uneven load, so capacity really drops tokens
    x = torch.randn(3, 20, 16)
    y_s, gx_s, gp_s = _grads(moe, x, "sorted")
    y_l, gx_l, gp_l = _grads(moe, x, "loop")
    torch.testing.assert_close(y_s, y_l, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx_s, gx_l, atol=1e-5, rtol=1e-5)
    assert gp_s.keys() == gp_l.keys()
    for name in gp_s:
        torch.testing.assert_close(gp_s[name], gp_l[name], atol=1e-5, rtol=1e-5, msg=name)


def test_an_expert_that_receives_no_tokens_gets_zero_gradients():
    torch.manual_seed(0)
    moe = MoE(16, 32, num_experts=4, top_k=2)
    x = torch.rand(2, 10, 16) + 0.1  # positive inputs, and expert 3's logit is strongly negative
    with torch.no_grad():
        moe.router.weight[3] = -10.0
    y_s, gx_s, gp_s = _grads(moe, x, "sorted")
    y_l, gx_l, gp_l = _grads(moe, x, "loop")
    torch.testing.assert_close(y_s, y_l, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx_s, gx_l, atol=1e-5, rtol=1e-5)
    for name in ("w1", "b1", "w2", "b2"):
        assert torch.all(gp_s[name][3] == 0), name
        torch.testing.assert_close(gp_s[name], gp_l[name], atol=1e-5, rtol=1e-5, msg=name)


def test_capacity_drops_are_counted():
    torch.manual_seed(0)
    moe = MoE(8, 16, num_experts=4, top_k=1, capacity_factor=0.5)
    moe.reset_stats(track=True)
    moe(torch.randn(64, 8))
    assert moe.summary()["drop_rate"] >= 0.5 - 1e-9  # capacity covers at most half the tokens


def test_balance_loss_is_one_when_perfectly_balanced():
    moe = MoE(4, 8, num_experts=4, top_k=1, aux_coef=1.0, z_coef=0.0)
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(4) * 5)
    moe(torch.eye(4).repeat(8, 1))
    probs = torch.softmax(torch.eye(4) * 5, -1)
    assert moe.aux_loss.item() == pytest.approx(float(4 * (0.25 * probs.mean(0)).sum()), abs=1e-6)


def test_router_is_fp32_and_weights_renormalised():
    moe = MoE(8, 16, num_experts=4, top_k=2).double()
    weights, idx = moe.route(torch.randn(10, 8, dtype=torch.float64))
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights.sum(-1), torch.ones(10))


def test_summary_and_affinity():
    torch.manual_seed(0)
    first, second = MoE(8, 16, 4, 2), MoE(8, 16, 4, 2)
    second.router.weight.data = first.router.weight.data.clone()  # identical routing
    for layer in (first, second):
        layer.reset_stats(track=True)
    x = torch.randn(50, 8)
    first(x), second(x)
    s = first.summary()
    assert len(s["load"]) == 4 and sum(s["load"]) == pytest.approx(1.0)
    assert s["ffn_experts_per_token"] == pytest.approx(2.0)
    aff = expert_affinity(first, second)
    assert aff["affinity"] == pytest.approx(1.0)
    assert aff["baseline"] <= aff["affinity"]


def test_router_z_loss_equals_its_formula():
    torch.manual_seed(0)
    moe = MoE(8, 16, num_experts=4, top_k=2, aux_coef=0.0, z_coef=1.0)
    with torch.no_grad():
        moe.router.weight.normal_(std=1.0)
    x = torch.randn(40, 8)
    moe(x)
    logits = x @ moe.router.weight.t()
    expected = (torch.log(torch.exp(logits).sum(-1)) ** 2).mean()
    assert moe.aux_loss.item() == pytest.approx(expected.item(), rel=1e-5)


def _train_router(z_coef: float, steps: int = 60) -> float:
    """Fit a task through the MoE with or without the z-loss; return mean logsumexp^2 after."""
    torch.manual_seed(0)
    moe = MoE(8, 16, num_experts=4, top_k=2, aux_coef=0.0, z_coef=z_coef)
    with torch.no_grad():
        moe.router.weight.normal_(std=1.0)
    x, target = torch.randn(64, 8), torch.randn(64, 8)
    opt = torch.optim.SGD(moe.parameters(), lr=0.05)
    for _ in range(steps):
        loss = (moe(x) - target).pow(2).mean() + moe.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(torch.logsumexp(x @ moe.router.weight.t(), -1).pow(2).mean())


def test_training_with_the_z_loss_shrinks_router_logits():
    without, with_z = _train_router(0.0), _train_router(1.0)  # 7.3 vs 1.9
    assert with_z < 0.5 * without, (with_z, without)
