import numpy as np
import ot
import torch

from refinery.distill.sinkhorn import sinkhorn_cost, sinkhorn_distance, sinkhorn_plan

from .helpers import logits


def test_loss_is_near_zero_when_student_equals_teacher():
    s, _, _ = logits(b=32, seed=5)
    # the diagonal costs 0 and most off-diagonal costs are far above eps, so P is ~diagonal;
    # the entropic blur leaves a small positive remainder (~3e-3 here)
    same = float(sinkhorn_distance(s, s, 2.0, 0.1, 20))
    other = float(sinkhorn_distance(s, logits(b=32, seed=6)[0], 2.0, 0.1, 20))
    assert 0 <= same < 1e-2 and other > 50 * same


def test_matches_pot_sinkhorn2_on_the_same_cost():
    """Uniform marginals 1/B, the same eps and number of iterations: our sum(P * C) is POT's
    `sinkhorn2` (the doubly stochastic convention, rows and columns summing to 1, is B times it)."""
    s, t, _ = logits(b=24, seed=7)
    cost = sinkhorn_cost(s, t, 2.0).double()
    b = cost.shape[0]
    ours = float((sinkhorn_plan(cost, 0.1, 20) * cost).sum())
    u = np.full(b, 1.0 / b)
    pot = float(ot.sinkhorn2(u, u, cost.numpy(), 0.1, numItermax=20, stopThr=0.0, warn=False))
    assert abs(ours - pot) < 1e-9 * max(1.0, pot)
    plan = sinkhorn_plan(cost, 0.1, 20)
    assert torch.allclose(plan.sum(1), torch.full((b,), 1.0 / b, dtype=plan.dtype))  # rows exact after the last step


def test_gradient_reaches_the_student_only():
    s, t, _ = logits(b=8, seed=8)
    s.requires_grad_(True)
    sinkhorn_distance(s, t, 2.0, 0.1, 20).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
