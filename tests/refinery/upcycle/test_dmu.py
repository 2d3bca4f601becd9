"""DMU: experts come from differently fine-tuned FFN variants, so they differ (CKA < 1)."""
from __future__ import annotations

import torch

from refinery.models import moe_layers
from refinery.upcycle import get_recipe
from refinery.upcycle.common import linear_cka, mean_expert_cka, router_parameters

from .conftest import small_config


def test_linear_cka_basics():
    torch.manual_seed(0)
    a = torch.randn(100, 8)
    assert abs(linear_cka(a, a) - 1) < 1e-9
    assert abs(linear_cka(a, 3 * a @ torch.linalg.qr(torch.randn(8, 8))[0]) - 1) < 1e-6
    assert linear_cka(a, torch.randn(100, 8)) < 0.5


def test_experts_differ_and_only_routers_train(teacher, digits):
    dense, arch = teacher
    made = get_recipe("dmu")(dense, arch, small_config(recipe="dmu"), digits, 0)
    assert len(made.history) == 4
    assert {id(p) for p in made.params} == {id(p) for p in router_parameters(made.model)}
    assert made.arch["moe"]["aux_coef"] == 0.01
    cka = mean_expert_cka(made.model, digits.test.x)
    assert cka < 1 - 1e-4
    for layer in moe_layers(made.model):
        assert not torch.allclose(layer.w1[0], layer.w1[1])
    assert made.evaluate(made.model, digits)["cka"] == cka
