import pytest
import torch

from refinery.distill import attached, make_loss
from refinery.distill.dual_head import binary_kl_norm
from refinery.models import count_params
from refinery.train import Hooks, fit
from refinery.config import TrainConfig
from refinery.data.dataset import Arrays

from .helpers import cfg, student, table


def test_binary_kl_norm_is_zero_at_equal_logits_and_positive_elsewhere():
    t = torch.randn(6, 10)
    assert float(binary_kl_norm(t, t, 2.0)) == pytest.approx(0.0, abs=1e-7)
    assert float(binary_kl_norm(t + 1.0, t, 2.0)) > 0  # logit level: a shift is not free


@pytest.mark.parametrize("arch", ["mlp", "cct"])
def test_auxiliary_head_is_absent_from_the_deployed_student(arch):
    model, _ = student(arch)
    plain, _ = student(arch)
    keys, n_params = set(plain.state_dict()), count_params(plain)
    loss = make_loss(cfg(loss="dual_head"), table(n=40))
    data = Arrays(torch.randn(40, 1, 8, 8), torch.randint(0, 10, (40,)), torch.arange(40))
    with attached(model, loss):
        assert any(k.startswith("distill_loss.aux_head") for k in model.state_dict())
        before = loss.aux_head.weight.detach().clone()
        fit(model, data, TrainConfig(epochs=1, batch_size=16), seed=0, hooks=Hooks(loss=loss))
        assert not torch.equal(before, loss.aux_head.weight)  # the optimizer trained the aux head
    assert set(model.state_dict()) == keys
    assert count_params(model) == n_params
    assert model(data.x[:5]).shape == plain(data.x[:5]).shape == (5, 10)
