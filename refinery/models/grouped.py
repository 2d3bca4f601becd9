"""Grouped expert FFN over contiguous row slices: y[s_e] = gelu(x[s_e] W1_e + b1_e) W2_e + b2_e.

Torch has no grouped GEMM on the CPU (and only a bf16 CUDA one), so this runs one GEMM per
expert, but with a hand-written backward. Autograd through `w1[e]` would allocate and zero a
full (E, d, h) gradient per expert (select's backward), and `unbind` would stack the E pieces
afterwards; both cost a full-size copy per weight per step. Here every GEMM writes straight
into its slice of one preallocated output or gradient (`out=`), and weight gradients are
skipped when the experts are frozen (router-only training).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _slices(counts: list[int]) -> list[tuple[int, slice]]:
    out, start = [], 0
    for e, n in enumerate(counts):
        if n:
            out.append((e, slice(start, start + n)))
        start += n
    return out


class GroupedFFN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, w1, b1, w2, b2, counts):
        parts = _slices(counts)
        pre = xs.new_empty(xs.shape[0], w1.shape[2])
        ys = xs.new_empty(xs.shape[0], w2.shape[2])
        for e, rows in parts:
            torch.addmm(b1[e], xs[rows], w1[e], out=pre[rows])
        act = F.gelu(pre)
        for e, rows in parts:
            torch.addmm(b2[e], act[rows], w2[e], out=ys[rows])
        ctx.save_for_backward(xs, w1, b1, w2, b2, pre, act)
        ctx.parts = parts
        return ys

    @staticmethod
    def backward(ctx, gy):
        xs, w1, b1, w2, b2, pre, act = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2 = ctx.needs_input_grad[:5]
        gy = gy.contiguous()
        # Every expert's gradient slice is written below, except those of experts that received
        # no rows: only then is zero-filling needed.
        alloc = torch.empty_like if len(ctx.parts) == w1.shape[0] else torch.zeros_like
        gw1 = alloc(w1) if need_w1 else None
        gw2 = alloc(w2) if need_w2 else None
        gb1 = alloc(b1) if need_b1 else None
        gb2 = alloc(b2) if need_b2 else None
        gact = torch.empty_like(act)
        for e, rows in ctx.parts:
            torch.mm(gy[rows], w2[e].t(), out=gact[rows])
            if need_w2:
                torch.mm(act[rows].t(), gy[rows], out=gw2[e])
            if need_b2:
                torch.sum(gy[rows], 0, out=gb2[e])
        gpre = torch.ops.aten.gelu_backward.grad_input(gact, pre, grad_input=gact)  # elementwise: in place
        gx = torch.empty_like(xs) if need_x else None
        for e, rows in ctx.parts:
            if need_x:
                torch.mm(gpre[rows], w1[e].t(), out=gx[rows])
            if need_w1:
                torch.mm(xs[rows].t(), gpre[rows], out=gw1[e])
            if need_b1:
                torch.sum(gpre[rows], 0, out=gb1[e])
        return gx, gw1, gb1, gw2, gb2, None


def grouped_ffn(xs: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                counts: list[int]) -> torch.Tensor:
    """Rows of `xs` are grouped by expert, `counts[e]` rows for expert e, in expert order."""
    dtype = xs.dtype
    if not all(t.dtype == dtype for t in (w1, b1, w2, b2)):  # out= needs one dtype (autocast)
        w1, b1, w2, b2 = (t.to(dtype) for t in (w1, b1, w2, b2))
    return GroupedFFN.apply(xs.contiguous(), w1, b1, w2, b2, counts)
