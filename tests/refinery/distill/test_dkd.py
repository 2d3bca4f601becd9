import torch
import torch.nn.functional as F

from refinery.distill import attached, make_loss
from refinery.distill.dkd import dkd_loss, dkd_terms

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


def test_epoch_counter_follows_fit_epochs_and_resets_per_model():
    loss = make_loss(cfg(loss="dkd", dkd_warmup_epochs=4), table(n=10))
    model, _ = student()
    x, y = torch.randn(10, 1, 8, 8), torch.zeros(10, dtype=torch.long)
    epochs = []
    for _ in range(3):  # 3 epochs of batches 4 + 4 + 2, each a permutation of the 10 ids
        for chunk in torch.randperm(10).split(4):
            loss(model, x[chunk], y[chunk], chunk)
            epochs.append(int(loss.epoch))
    assert epochs == [0] * 3 + [1] * 3 + [2] * 3
    assert loss.warmup(2) == 0.5
    other, _ = student()
    loss(other, x[:4], y[:4], torch.arange(4))
    assert int(loss.epoch) == 0


def test_epoch_count_survives_a_resume_through_the_attached_state():
    """An epoch checkpoint stores the buffers; the first batch after loading opens the next epoch."""
    model, _ = student()
    x, y = torch.randn(10, 1, 8, 8), torch.zeros(10, dtype=torch.long)
    first = make_loss(cfg(loss="dkd"), table(n=10))
    with attached(model, first):
        for _ in range(2):
            for chunk in torch.arange(10).split(5):
                first(model, x[chunk], y[chunk], chunk)
        state = {k: v.clone() for k, v in model.state_dict().items()}
    resumed = make_loss(cfg(loss="dkd"), table(n=10))
    with attached(model, resumed):
        model.load_state_dict(state)
        resumed(model, x[:5], y[:5], torch.arange(5))
    assert int(resumed.epoch) == 2 and "distill_loss.epoch" not in model.state_dict()
