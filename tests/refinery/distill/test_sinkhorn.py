import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from refinery.distill import make_loss
from refinery.distill.sinkhorn import sinkhorn_cost, sinkhorn_distance, sinkhorn_plan

from .helpers import cfg, logits, student, table


def direct_sinkhorn(cost: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """The plan computed independently, the plain way: divide K = exp(-C / eps) by its row sums,
    then by its column sums, `iters` times (float64)."""
    k = torch.exp(-cost.double() / eps)
    for _ in range(iters):
        k = k / k.sum(dim=1, keepdim=True)
        k = k / k.sum(dim=0, keepdim=True)
    return k


def test_plan_rows_and_columns_each_sum_to_one():
    """The reference normalises rows, then columns: after the last (column) step every column
    sums to 1 exactly; the rows approach 1 as the rounds go on (within 0.03 after the default 20
    rounds on these logits, within 1e-6 after 100)."""
    s, t, _ = logits(b=32, seed=7)
    cost = sinkhorn_cost(s, t, 2.0).double()
    ones = torch.ones(32, dtype=cost.dtype)
    plan = sinkhorn_plan(cost, 0.1, 20)
    assert torch.allclose(plan.sum(0), ones, atol=1e-12)  # exact: the last step
    assert torch.allclose(plan.sum(1), ones, atol=0.03)
    assert float(plan.sum()) == pytest.approx(32.0, abs=1e-9)
    assert torch.allclose(sinkhorn_plan(cost, 0.1, 100).sum(1), ones, atol=1e-6)


def test_plan_and_loss_agree_with_an_independent_computation():
    s, t, _ = logits(b=24, seed=7)
    s, t = s.double(), t.double()
    cost = sinkhorn_cost(s, t, 2.0)
    ps, pt = F.softmax(s / 2.0, 1), F.softmax(t / 2.0, 1)
    assert torch.allclose(cost, torch.cdist(ps, pt, p=1), atol=1e-12)
    for iters in (1, 3, 20):  # one round already tells rows-then-columns from columns-then-rows
        assert torch.allclose(sinkhorn_plan(cost, 0.1, iters), direct_sinkhorn(cost, 0.1, iters), atol=1e-12)
    ours = float(sinkhorn_distance(s, t, 2.0, 0.1, 20))
    assert ours == pytest.approx(float((direct_sinkhorn(cost, 0.1, 20) * cost).sum()), rel=1e-10)


def test_matches_pot_sinkhorn2_on_the_transposed_cost():
    """POT updates columns first; the reference's rows-first order is POT's on C^T, and its plan
    of mass B is B times POT's with uniform marginals 1/B."""
    s, t, _ = logits(b=24, seed=7)
    cost = sinkhorn_cost(s, t, 2.0).double()
    b = cost.shape[0]
    ours = float((sinkhorn_plan(cost, 0.1, 20) * cost).sum())
    u = np.full(b, 1.0 / b)
    pot = float(ot.sinkhorn2(u, u, cost.numpy().T, 0.1, numItermax=20, stopThr=0.0, warn=False))
    assert ours == pytest.approx(b * pot, rel=1e-9)


def test_loss_is_ce_plus_a_thousandth_of_the_transport_cost_by_default():
    model, _ = student()
    x, y, ids = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)), torch.arange(16)
    lookup = table(n=16)
    with torch.no_grad():
        s = model(x)
        expect = F.cross_entropy(s, y, label_smoothing=0.1) + 0.001 * sinkhorn_distance(s, lookup(x, ids), 2.0, 0.1, 20)
        assert torch.allclose(make_loss(cfg(loss="sinkhorn"), lookup)(model, x, y, ids), expect)


def test_loss_is_near_zero_when_student_equals_teacher():
    s, _, _ = logits(b=32, seed=5)
    # the diagonal costs 0 and most off-diagonal costs are far above eps, so P is ~the identity;
    # the entropic blur leaves a small positive remainder (~0.1 here, with a plan of mass 32)
    same = float(sinkhorn_distance(s, s, 2.0, 0.1, 20))
    other = float(sinkhorn_distance(s, logits(b=32, seed=6)[0], 2.0, 0.1, 20))
    assert 0 <= same < 0.3 and other > 50 * same


def test_gradient_reaches_the_student_only():
    s, t, _ = logits(b=8, seed=8)
    s.requires_grad_(True)
    sinkhorn_distance(s, t, 2.0, 0.1, 20).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
