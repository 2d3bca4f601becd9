"""Benchmark: forward + backward of one MoE layer against a dense FFN and the plain loop.

Setting (the issue's): E=8 experts, top-2, d=256, 4096 tokens, expert hidden h=2d (the
project's mlp_ratio). The dense baseline has the same *active* parameters: one FFN of hidden
2h, since each token runs two experts of hidden h. The three are timed in paired,
rotating rounds (bench/timing.py); each ratio is the median of the per-round ratios.

Last line: `moe: vs_dense=X vs_loop=Y`, time ratios MoE/dense and MoE/loop (below 1: faster).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from refinery.models.blocks import FeedForward
from refinery.models.moe import MoE

from .timing import paired_ratio, paired_rounds


def step_seconds(layer: nn.Module, x: torch.Tensor) -> float:
    x = x.detach().requires_grad_(True)
    start = time.perf_counter()
    y = layer(x)
    y.square().mean().backward()
    layer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=512, help="expert hidden size h")
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    moe = MoE(args.dim, args.hidden, args.experts, args.top_k, dispatch="sorted")
    loop = MoE(args.dim, args.hidden, args.experts, args.top_k, dispatch="loop")
    loop.load_state_dict(moe.state_dict())
    dense = FeedForward(args.dim, args.top_k * args.hidden)
    x = torch.randn(args.tokens, args.dim)
    layers = {"moe": moe, "dense": dense, "loop": loop}
    for layer in layers.values():  # warm-up: allocator, MKL handles
        step_seconds(layer, x)
    seconds = paired_rounds({name: (lambda r, layer=layer: step_seconds(layer, x)) for name, layer in layers.items()},
                            args.repeats)
    med = {name: statistics.median(ts) for name, ts in seconds.items()}
    ratio = {base: paired_ratio(seconds, "moe", base) for base in ("dense", "loop")}
    print(f"threads={torch.get_num_threads()} E={args.experts} k={args.top_k} d={args.dim} h={args.hidden} "
          f"tokens={args.tokens}; median ms: " + ", ".join(f"{n}={1000 * t:.1f}" for n, t in med.items()))
    print(f"moe: vs_dense={ratio['dense']:.2f} vs_loop={ratio['loop']:.2f}")


if __name__ == "__main__":
    main()
