import pytest
import torch
import torch.nn.functional as F

from refinery.distill import attached, make_loss
from refinery.distill.dual_head import binary_kl_norm
from refinery.distill.kd import kd_loss
from refinery.models import count_params
from refinery.train import Hooks, fit
from refinery.config import TrainConfig
from refinery.data.dataset import Arrays

from .helpers import cfg, student, table


def test_binary_kl_norm_is_zero_at_equal_logits_and_positive_elsewhere():
    t = torch.randn(6, 10)
    assert float(binary_kl_norm(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(binary_kl_norm(t + 1.0, t, 2.0)) > 0  # logit level: a shift is not free


def test_binary_kl_norm_matches_the_formula_summed_over_classes():
    """Per entry KL(Bern(1/2) || Bern(q)) = 1/2 log(1/2 / q) + 1/2 log(1/2 / (1 - q)), q =
    sigmoid((a - t) / T); summed over the classes, averaged over the samples."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(5, 7, generator=g, dtype=torch.float64) * 3
    t = torch.randn(5, 7, generator=g, dtype=torch.float64) * 3
    q = torch.sigmoid((a - t) / 2.0)
    per_entry = 0.5 * torch.log(0.5 / q) + 0.5 * torch.log(0.5 / (1 - q))
    assert float(binary_kl_norm(a, t, 2.0)) == pytest.approx(float(per_entry.sum() / 5), rel=1e-12)
    assert float(binary_kl_norm(a, t, 2.0, "mean")) == pytest.approx(float(per_entry.mean()), rel=1e-12)


def test_duplicating_the_classes_doubles_the_loss():
    """Summed over classes: C -> 2C with every class repeated doubles it (a mean would not)."""
    a, t = torch.randn(6, 10), torch.randn(6, 10)
    single = binary_kl_norm(a, t, 2.0)
    doubled = binary_kl_norm(torch.cat([a, a], 1), torch.cat([t, t], 1), 2.0)
    assert float(doubled) == pytest.approx(2 * float(single), rel=1e-5)
    # and doubling the batch the same way does not change it (mean over samples)
    assert float(binary_kl_norm(torch.cat([a, a]), torch.cat([t, t]), 2.0)) == pytest.approx(float(single), rel=1e-5)


def test_default_loss_is_ce_on_the_main_head_plus_the_auxiliary_term():
    """The reference's dhkd: 1 * CE(main head) + 1 * T^2 * BinaryKL-Norm(aux head, teacher)."""
    model, _ = student()
    lookup = table(n=16)
    x, y, ids = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)), torch.arange(16)
    for main in ("ce", "kd"):
        loss = make_loss(cfg(loss="dual_head", dual_head_main=main), lookup)
        loss.bind(model)
        with torch.no_grad():
            f = model.features(x)
            base = (F.cross_entropy(model.head(f), y, label_smoothing=0.1) if main == "ce" else
                    kd_loss(model.head(f), lookup(x, ids), y, 4.0, 0.9, 0.1))
            expect = base + 4.0 * binary_kl_norm(loss.aux_head(f), lookup(x, ids), 2.0)
            assert torch.allclose(loss(model, x, y, ids), expect)


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
