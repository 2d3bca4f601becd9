"""Sparse upcycling: at step 0 the MoE equals the dense model, for any router weights."""
from __future__ import annotations

import pytest
import torch

from refinery.models import build_model, moe_layers
from refinery.upcycle import RECIPES, get_recipe

from .conftest import small_config


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_step0_output_equals_dense_for_random_routers(teacher, digits, top_k):
    dense, arch = teacher
    made = get_recipe("sparse")(dense, arch, small_config(top_k=top_k))
    torch.manual_seed(1)
    for layer in moe_layers(made.model):
        with torch.no_grad():
            layer.router.weight.normal_(std=3.0)  # far from the init: routing really varies
    x = digits.test.x[:64]
    with torch.no_grad():
        torch.testing.assert_close(made.model.eval()(x), dense(x), atol=1e-5, rtol=1e-5)


def test_arch_rebuilds_without_pickle_and_keeps_the_old_record(teacher, digits):
    dense, arch = teacher
    made = get_recipe("sparse")(dense, arch, small_config())
    assert made.arch["moe"] == {"num_experts": 4, "top_k": 2, "aux_coef": 1e-2, "z_coef": 1e-3, "capacity_factor": None}
    rebuilt = build_model(made.arch)
    rebuilt.load_state_dict(made.model.state_dict())
    x = digits.test.x[:16]
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), made.model.eval()(x))


def test_every_recipe_is_registered():
    assert set(RECIPES) == {"sparse", "dmu", "moepp", "mola", "phatgoose"}
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("nope")
