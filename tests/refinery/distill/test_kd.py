import torch
import torch.nn.functional as F

from refinery.distill import make_loss
from refinery.distill.kd import kd_loss

from .helpers import cfg, logits, student, table


def test_kd_is_cross_entropy_when_alpha_is_zero():
    s, t, y = logits()
    assert torch.allclose(kd_loss(s, t, y, 4.0, 0.0, 0.1), F.cross_entropy(s, y, label_smoothing=0.1))
    # even when the teacher row is missing (NaN), alpha=0 never touches it
    assert torch.isfinite(kd_loss(s, torch.full_like(t, float("nan")), y, 4.0, 0.0))


def test_kd_term_vanishes_for_identical_logits():
    s, _, y = logits()
    assert torch.allclose(kd_loss(s, s, y, 4.0, 1.0), torch.zeros(()), atol=1e-6)


def test_registered_hook_runs_on_a_student():
    model, _ = student()
    x, ids = torch.randn(8, 1, 8, 8), torch.arange(8)
    loss = make_loss(cfg(loss="kd"), table())(model, x, torch.zeros(8, dtype=torch.long), ids)
    loss.backward()
    assert torch.isfinite(loss)
