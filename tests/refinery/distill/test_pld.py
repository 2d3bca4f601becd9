import torch
import torch.nn.functional as F

from refinery.distill.pld import pld_loss, teacher_order

from .helpers import logits


def test_invariant_to_a_constant_added_to_the_logits():
    s, t, y = logits(seed=9)
    base = pld_loss(s, t, y)
    for c in (-7.0, 0.5, 100.0):
        assert torch.allclose(pld_loss(s + c, t, y), base, atol=1e-4)
    per_row = torch.randn(s.shape[0], 1)  # a different constant per sample: still invariant
    assert torch.allclose(pld_loss(s + per_row, t, y), base, atol=1e-4)


def test_order_puts_the_label_first_then_teacher_confidence():
    t = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    assert teacher_order(t, torch.tensor([3])).tolist() == [[3, 0, 2, 1]]


def test_matches_the_formula_written_out():
    s, t, y = logits(b=4, c=5, seed=10)
    total = 0.0
    for i in range(4):
        order = teacher_order(t[i:i + 1], y[i:i + 1])[0]
        w = F.softmax(t[i], 0)[order]
        ss = s[i][order]
        total += -sum(w[k] * (ss[k] - torch.logsumexp(ss[k:], 0)) for k in range(5))
    assert torch.allclose(pld_loss(s, t, y), total / 4, atol=1e-5)


def test_prefers_the_teacher_ranking():
    _, t, y = logits(seed=11)
    good = t.clone().scatter(1, y[:, None], 50.0)  # label on top, rest in the teacher's order
    assert pld_loss(good, t, y) < pld_loss(-good, t, y)
