import pytest
import torch
import torch.nn.functional as F

from refinery.config import TrainConfig
from refinery.data.dataset import Arrays
from refinery.distill import make_loss
from refinery.distill.dkd import dkd_loss, dkd_terms, warmup_factor
from refinery.train import Hooks, Step, fit

from .helpers import cfg, logits, student, table


def per_sample_kd(s, t, temperature):
    return F.kl_div(F.log_softmax(s / temperature, 1), F.log_softmax(t / temperature, 1),
                    reduction="none", log_target=True).sum(1)


def test_kd_decomposes_into_tckd_plus_weighted_nckd():
    """The paper's Eq. 5: KD = TCKD + (1 - p_t,target) * NCKD, per sample."""
    for temperature in (1.0, 4.0):
        s, t, y = logits(b=64, seed=3)
        tckd, nckd = dkd_terms(s, t, y, temperature)
        p_target = F.softmax(t / temperature, 1).gather(1, y[:, None]).squeeze(1)
        assert torch.allclose(per_sample_kd(s, t, temperature), tckd + (1 - p_target) * nckd, atol=1e-5)


def test_loss_combines_the_terms_as_the_formula_says():
    s, t, y = logits(seed=4)
    tckd, nckd = dkd_terms(s, t, y, 4.0)
    expect = F.cross_entropy(s, y) + 0.5 * (1.0 * tckd.mean() + 8.0 * nckd.mean()) * 16
    assert torch.allclose(dkd_loss(s, t, y, 4.0, 1.0, 8.0, 0.5), expect)
    assert torch.allclose(dkd_loss(s, t, y, 4.0, 1.0, 8.0, 0.0), F.cross_entropy(s, y))  # warm-up start


def test_terms_vanish_for_identical_logits():
    s, _, y = logits()
    tckd, nckd = dkd_terms(s, s, y, 4.0)
    assert tckd.abs().max() < 1e-5 and nckd.abs().max() < 1e-5


def kd_factor(loss, model, x, y, ids, at):
    """The warm-up factor a DKD loss hook applied at step `at`, read off its value: the loss is
    CE + factor * KD, so factor = (L(at) - CE) / (L(full) - CE)."""
    with torch.no_grad():
        s = model(x)
        ce = F.cross_entropy(s, y, label_smoothing=0.1)
        return float((loss(model, x, y, ids, at) - ce) / (loss(model, x, y, ids, None) - ce))


def test_warmup_follows_the_reference_epoch_count():
    """mdistiller counts epochs from 1: the factor is 1/20 in the first epoch, 1 from epoch 20."""
    loss = make_loss(cfg(loss="dkd"), table(n=8))
    model, _ = student()
    x, y, ids = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)), torch.arange(8)
    factors = {e: kd_factor(loss, model, x, y, ids, Step(epoch=e, step=1, steps_per_epoch=3, epochs=60))
               for e in (0, 1, 9, 18, 19, 20, 59)}
    expect = {0: 1 / 20, 1: 2 / 20, 9: 10 / 20, 18: 19 / 20, 19: 1.0, 20: 1.0, 59: 1.0}
    assert factors == pytest.approx(expect, rel=1e-4)
    # the step within the epoch does not matter: constant over an epoch, as in the reference
    assert kd_factor(loss, model, x, y, ids, Step(epoch=4, step=0, steps_per_epoch=3, epochs=60)) == \
        pytest.approx(kd_factor(loss, model, x, y, ids, Step(epoch=4, step=2, steps_per_epoch=3, epochs=60)), rel=1e-5)
    assert warmup_factor(1, 20) == 1 / 20 and warmup_factor(20, 20) == 1.0 and warmup_factor(1, 0) == 1.0


def test_warmup_follows_the_loops_epoch_under_rs2():
    """With RS2 (subset_fraction < 1) each loop epoch sees a fraction of the data; the factor is
    that of the loop's epoch, whatever the sample ids of the batches."""
    dcfg = cfg(loss="dkd", dkd_warmup_epochs=4, train=TrainConfig(epochs=6, batch_size=4, subset_fraction=0.2))
    inner = make_loss(dcfg, table(n=40))
    seen = []

    def loss(model, x, y, ids, at=None):
        seen.append((at.epoch, kd_factor(inner, model, x, y, ids, at)))
        return inner(model, x, y, ids, at)

    model, _ = student()
    data = Arrays(torch.randn(40, 1, 8, 8), torch.randint(0, 10, (40,)), torch.arange(40))
    fit(model, data, dcfg.train, seed=0, hooks=Hooks(loss=loss))
    assert sorted({e for e, _ in seen}) == list(range(6))  # 2 steps in each of the 6 loop epochs
    for epoch, factor in seen:
        assert factor == pytest.approx(min((epoch + 1) / 4, 1.0), rel=1e-4)


def test_full_weight_when_called_outside_the_loop():
    loss = make_loss(cfg(loss="dkd"), table(n=8))
    model, _ = student()
    x, y, ids = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)), torch.arange(8)
    with torch.no_grad():
        s = model(x)
        full = dkd_loss(s, table(n=8)(x, ids), y, 4.0, 1.0, 8.0, 1.0, 0.1)
        assert torch.allclose(loss(model, x, y, ids), full)
