"""Parameter, active-parameter and FLOP counts against hand formulas; timing helpers' contracts."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from refinery.metrics.cost import active_params, cost_report, count_params, flops_per_sample, latency_ms, throughput
from refinery.models import CCT, MLP, MoE, attach_moe
from refinery.models.blocks import SelfAttention


def test_linear_flops_are_two_in_out_per_sample():
    assert flops_per_sample(nn.Linear(10, 20), torch.randn(8, 10)) == 400


def test_linear_flops_add_over_layers_and_rows():
    mlp = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    assert flops_per_sample(mlp, torch.randn(3, 10)) == 400 + 200
    # A Linear over a token axis runs once per token.
    assert flops_per_sample(nn.Linear(10, 20), torch.randn(2, 7, 10)) == 7 * 400


def test_conv2d_flops_hand_computed():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)  # output 8 x 5 x 5
    assert flops_per_sample(conv, torch.randn(4, 3, 5, 5)) == 2 * 3 * 9 * 8 * 25


def test_grouped_strided_conv1d_flops_hand_computed():
    conv = nn.Conv1d(4, 6, kernel_size=3, stride=2, groups=2)  # length 11 -> 5 outputs
    assert flops_per_sample(conv, torch.randn(2, 4, 11)) == 2 * (4 // 2) * 3 * 6 * 5


def test_self_attention_flops_hand_computed():
    n, d = 5, 8
    qkv, proj, scores = 2 * d * 3 * d * n, 2 * d * d * n, 2 * 2 * n * n * d
    assert flops_per_sample(SelfAttention(d, heads=2), torch.randn(3, n, d)) == qkv + proj + scores


def _moe_pair(dim=4, hidden=6, experts=4) -> tuple[MoE, MoE]:
    torch.manual_seed(0)
    top2 = MoE(dim, hidden, experts, top_k=2)
    top1 = copy.deepcopy(top2)
    top1.top_k = 1  # same router weights: each token's first choice is unchanged
    return top1, top2


def test_moe_flops_follow_routing_formula_and_top_k():
    dim, hidden, experts, tokens = 4, 6, 4, 5
    top1, top2 = _moe_pair(dim, hidden, experts)
    x = torch.randn(3, tokens, dim)
    f1, f2 = flops_per_sample(top1, x), flops_per_sample(top2, x)
    router, expert = 2 * dim * experts, 2 * dim * hidden + 2 * hidden * dim
    assert f1 == tokens * (router + 1 * expert)
    assert f2 == tokens * (router + 2 * expert)
    assert f1 < f2


def test_moe_flops_count_capacity_dropped_assignments_that_still_run():
    top1, _ = _moe_pair()
    x = torch.randn(2, 3, 4)
    # Capacity dropping leaves the executed assignments unchanged (dropped ones are zero-weighted).
    top1.capacity_factor = 0.5
    dim, hidden, experts = 4, 6, 4
    assert flops_per_sample(top1, x) == 3 * (2 * dim * experts + 4 * dim * hidden)


def test_lora_expert_layer_counts_its_frozen_ffn_router_and_top_k_adapters():
    from refinery.models.lora import LoRAFFN

    dim, hidden, experts, k, rank, tokens = 6, 10, 4, 2, 3, 5
    torch.manual_seed(0)
    layer = LoRAFFN(dim, hidden, experts, k, rank=rank)
    dense = 2 * dim * hidden + 2 * hidden * dim
    # a router per adapted linear, each on that linear's input (d for fc1, h for fc2)
    router, adapters = 2 * (dim + hidden) * experts, k * 4 * rank * (dim + hidden)
    assert flops_per_sample(layer, torch.randn(3, tokens, dim)) == tokens * (dense + router + adapters)
    per_expert = 2 * rank * (dim + hidden)
    assert active_params(layer) == count_params(layer) - (experts - k) * per_expert


def test_upcycled_top1_model_costs_exactly_its_routers_more_than_dense():
    torch.manual_seed(0)
    dense = MLP((12,), 3, dim=8, depth=2, mlp_ratio=2.0)
    sparse = copy.deepcopy(dense)
    attach_moe(sparse, {"num_experts": 4, "top_k": 1})
    x = torch.randn(5, 12)
    assert flops_per_sample(sparse, x) - flops_per_sample(dense, x) == 2 * (2 * 8 * 4)


def test_measuring_leaves_moe_statistics_aux_loss_and_mode_untouched():
    top1, _ = _moe_pair()
    top1.reset_stats(track=True)
    top1(torch.randn(4, 4))
    counts, tokens, aux = top1.stats["counts"].clone(), top1.stats["tokens"], top1.aux_loss
    top1.train()
    x = torch.randn(2, 3, 4)
    flops_per_sample(top1, x)
    latency_ms(top1, x, repeats=2, warmup=1)
    throughput(top1, x, batch=8, repeats=2, warmup=1)
    assert top1.tracking and top1.training
    assert torch.equal(top1.stats["counts"], counts) and top1.stats["tokens"] == tokens
    assert top1.aux_loss is aux
    assert not top1._forward_hooks


def test_active_params_count_router_and_top_k_experts():
    moe = MoE(4, 6, num_experts=4, top_k=1)
    router, per_expert = 4 * 4, 4 * 6 + 6 + 6 * 4 + 4
    assert count_params(moe) == router + 4 * per_expert
    assert active_params(moe) == router + 1 * per_expert
    assert active_params(MoE(4, 6, num_experts=4, top_k=4)) == count_params(MoE(4, 6, num_experts=4, top_k=4))


def test_active_params_equal_params_for_dense_and_smaller_for_sparse():
    dense = CCT((1, 8, 8), 10, dim=16, depth=1, heads=2, conv_channels=4)
    assert active_params(dense) == count_params(dense)
    sparse = copy.deepcopy(dense)
    attach_moe(sparse, {"num_experts": 4, "top_k": 2})
    assert active_params(sparse) < count_params(sparse)
    ffn = 16 * 32 + 32 + 32 * 16 + 16
    assert count_params(sparse) - active_params(sparse) == 2 * ffn


class ShapeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 2)
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.fc(x)


def test_latency_times_batch_one_and_throughput_the_requested_batch():
    model = ShapeRecorder()
    ms = latency_ms(model, torch.randn(10, 6), repeats=3, warmup=2)
    assert ms > 0 and model.batches == [1] * 5
    model.batches.clear()
    rate = throughput(model, torch.randn(10, 6), batch=32, repeats=2, warmup=1)
    assert rate > 0 and model.batches == [32] * 3


def test_cost_report_on_a_cct():
    model = CCT((1, 8, 8), 10, dim=16, depth=1, heads=2, conv_channels=4)
    attach_moe(model, {"num_experts": 4, "top_k": 1})
    report = cost_report(model, (1, 8, 8), flops_batch=8, latency_repeats=2, throughput_batch=16,
                         throughput_repeats=2)
    assert set(report) == {"params", "active_params", "flops_per_sample", "latency_ms", "throughput"}
    assert report["active_params"] < report["params"] == count_params(model)
    assert report["flops_per_sample"] == flops_per_sample(model, torch.randn(8, 1, 8, 8))
    assert report["latency_ms"] > 0 and report["throughput"] > 0
    with pytest.raises(ValueError):
        cost_report(model, (1, 8, 8), example_input=torch.randn(2, 1, 4, 4))


def test_cct_flops_hand_computed():
    dim, hidden, classes, tokens = 16, 32, 10, 16  # 8x8 input, stride-2 pool -> 4x4 tokens
    model = CCT((1, 8, 8), classes, dim=dim, depth=1, heads=2, conv_channels=4)
    tokenizer = 2 * 1 * 9 * 4 * 64 + 2 * 4 * 9 * dim * 64
    attention = 2 * dim * 3 * dim * tokens + 2 * dim * dim * tokens + 4 * tokens * tokens * dim
    ffn = 2 * (2 * dim * hidden * tokens)
    pool_and_head = 2 * dim * 1 * tokens + 2 * dim * classes
    expected = tokenizer + attention + ffn + pool_and_head
    assert flops_per_sample(model, torch.randn(4, 1, 8, 8)) == expected
