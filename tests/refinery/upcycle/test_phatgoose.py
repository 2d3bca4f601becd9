"""PHATGOOSE: independent experts, gate vectors, standardised top-k routing vs averaging."""
from __future__ import annotations

import torch

from refinery.models import build_model
from refinery.models.lora import Phatgoose
from refinery.upcycle import get_recipe

from .conftest import small_config


def test_routing_is_trained_and_compared_with_uniform(teacher, digits):
    dense, arch = teacher
    made = get_recipe("phatgoose")(dense, arch, small_config(recipe="phatgoose", expert_epochs=4), digits, 0)
    assert made.params == []  # nothing trains jointly
    layers = [m for m in made.model.modules() if isinstance(m, Phatgoose)]
    assert layers and all(m.mode == "route" for m in layers)
    assert all(float(m.router.weight.abs().sum(1).min()) > 0 for m in layers)  # every gate trained
    scores = made.evaluate(made.model, digits)
    assert set(scores) == {"uniform_test_acc", "routed_test_acc"}
    # Recorded rather than asserted as a win: on 150 test digits after a few epochs the gap is noise.
    assert 0 <= scores["uniform_test_acc"] <= 1 and 0 <= scores["routed_test_acc"] <= 1
    rebuilt = build_model(made.arch)
    rebuilt.load_state_dict(made.model.state_dict())
    x = digits.test.x[:16]
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), made.model(x))


def test_training_one_expert_leaves_the_others_alone(teacher, digits):
    dense, arch = teacher
    made = get_recipe("phatgoose")(dense, arch, small_config(recipe="phatgoose", num_experts=2, expert_epochs=1), digits, 0)
    layer = next(m for m in made.model.modules() if isinstance(m, Phatgoose))
    # B starts at zero; both experts trained on their own group, so both moved, differently.
    assert layer.lora.b1[0].abs().sum() > 0 and layer.lora.b1[1].abs().sum() > 0
    assert not torch.allclose(layer.lora.b1[0], layer.lora.b1[1])
