"""Inference cost: parameters, active parameters, FLOPs per sample, latency and throughput.

Conventions (METHODS.md, "Evaluation"):

- A multiply-add counts as 2 FLOPs. Only the matrix products are counted (they dominate);
  norms, activations, softmax, pooling, biases and residual adds are left out.
  - nn.Linear: 2 * in * out per row;
  - nn.Conv1d/2d/3d: 2 * (C_in / groups) * kernel elements * C_out * output positions;
  - `SelfAttention` (scaled dot-product attention, Vaswani et al. 2017): QK^T and AV cost
    2 * n^2 * d each, so 4 * n^2 * d per sequence; its qkv/proj Linears count themselves.
- Mixture of experts (Shazeer et al. 2017; Fedus et al., "Switch Transformers", 2022): only
  the routed experts run. Per token the router costs its layer's `router_flops()` (2 * d * E
  for a linear router), and each (token, expert)
  assignment costs 2*d*h + 2*h*d. The assignments are read from the layer's own routing
  statistics during the measured forward, so they are the real routing of that batch.
  Active parameters count, per MoE layer, the router plus top_k of the E experts (the
  "activated parameters" of sparse models), so a dense model has active == total.
- Routed LoRA linears (MoLA, PHATGOOSE; one per adapted linear n -> m, with its own router):
  the frozen base counts as a Linear. Per token the router costs 2 * n * E, and each (token,
  expert) assignment 2 * r * (n + m): A and B at rank r. Active parameters keep top_k of the
  E adapters. (The layer computes all E adapters as two thin GEMMs, zero-weighted outside
  the top-k; a top-k dispatch would not need them, so they are not counted, as for MoE.)
- Latency is the median wall time of a batch-1 forward; throughput is samples per second at
  a large batch. Both run in eval mode under torch.no_grad after warm-up.

Measuring leaves the model as found: training flags, MoE routing statistics and aux losses.
"""
from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from ..models import count_params
from ..models.blocks import SelfAttention
from ..models.lora import LoRAExpertLinear
from ..models.moe import MoE, Routed, routed_layers

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _expert_tensors(layer: Routed) -> tuple[Tensor, ...]:
    if isinstance(layer, MoE):
        return layer.w1, layer.b1, layer.w2, layer.b2
    if isinstance(layer, LoRAExpertLinear):
        return (*layer.a, *layer.b)
    return ()


def active_params(model: nn.Module) -> int:
    """Parameters used per token: routed layers contribute their router and top_k experts only."""
    total = count_params(model)
    for layer in routed_layers(model):
        tensors = _expert_tensors(layer)
        if tensors:
            per_expert = sum(t.numel() for t in tensors) // layer.num_experts
            total -= max(layer.num_experts - layer.top_k, 0) * per_expert
    return total


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextmanager
def _measuring(model: nn.Module) -> Iterator[None]:
    """Eval mode and no_grad; afterwards restore every module's mode and MoE bookkeeping."""
    modes = [(m, m.training) for m in model.modules()]
    # Our forwards must not leak into expert-load statistics or the aux loss a caller may
    # still read (evaluation reports expert load from the same model).
    saved = [(m, m.tracking, m.stats, m.aux_loss) for m in routed_layers(model)]
    for layer in routed_layers(model):
        layer.reset_stats(track=False)
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
        for moe, tracking, stats, aux in saved:
            moe.reset_stats(track=tracking)
            moe.stats, moe.aux_loss = stats, aux


# --------------------------------------------------------------------------- FLOPs
def _linear_flops(module: nn.Linear, inputs: tuple, output: Tensor) -> int:
    rows = inputs[0].numel() // module.in_features
    return 2 * module.in_features * module.out_features * rows


def _conv_flops(module: nn.modules.conv._ConvNd, inputs: tuple, output: Tensor) -> int:
    # output.numel() = batch * C_out * output positions
    return 2 * (module.in_channels // module.groups) * math.prod(module.kernel_size) * output.numel()


def _attention_flops(module: SelfAttention, inputs: tuple, output: Tensor) -> int:
    b, n, d = inputs[0].shape
    return 2 * 2 * b * n * n * d


def _routed_flops(layer: Routed) -> int:
    """Router plus expert work of one routed layer over the tracked forward."""
    tokens, dim = layer.stats["tokens"], layer.dim
    # Every assignment in `counts` is run through its expert (capacity-dropped ones too:
    # their output is only zero-weighted), so this is the work the layer really did.
    assignments = int(layer.stats["counts"].sum())
    router = layer.router_flops() * tokens
    if isinstance(layer, MoE):
        hidden = layer.w1.shape[2]
        return router + assignments * (2 * dim * hidden + 2 * hidden * dim)
    if isinstance(layer, LoRAExpertLinear):
        return router + assignments * 2 * layer.rank * (dim + layer.base.out_features)
    return router


def _counter(module: nn.Module, routers: set[int]) -> Callable[..., int] | None:
    if isinstance(module, nn.Linear):
        # An MoE router is costed with its layer: the layer calls it functionally today, and
        # skipping its hook keeps the count right if it ever calls the module instead.
        return None if id(module) in routers else _linear_flops
    if isinstance(module, _CONVS):
        return _conv_flops
    if isinstance(module, SelfAttention):
        return _attention_flops
    return None


def flops_per_sample(model: nn.Module, example_input: Tensor) -> float:
    """FLOPs of one forward of `example_input` (batch first), divided by its batch size."""
    routed = routed_layers(model)
    routers = {id(m) for layer in routed for m in layer.router.modules()}
    total = [0]
    handles = []
    for module in model.modules():
        count = _counter(module, routers)
        if count is not None:
            def hook(mod, inputs, output, count=count):
                total[0] += count(mod, inputs, output)
            handles.append(module.register_forward_hook(hook))
    try:
        with _measuring(model):
            for layer in routed:
                layer.reset_stats(track=True)
            model(example_input.to(_device(model)))
            total[0] += sum(_routed_flops(layer) for layer in routed)
    finally:
        for handle in handles:
            handle.remove()
    return total[0] / example_input.shape[0]


# --------------------------------------------------------------------------- timing
def _median_seconds(model: nn.Module, x: Tensor, repeats: int, warmup: int) -> float:
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    def sync() -> None:
        # CUDA kernels are asynchronous; without a sync the clock measures only the launch.
        if x.is_cuda:
            torch.cuda.synchronize(x.device)

    with _measuring(model):
        for _ in range(warmup):
            model(x)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def latency_ms(model: nn.Module, example_input: Tensor, repeats: int = 20, warmup: int = 5) -> float:
    """Median milliseconds of a batch-1 forward (the first sample of `example_input`)."""
    x = example_input[:1].to(_device(model))
    return 1000.0 * _median_seconds(model, x, repeats, warmup)


def throughput(model: nn.Module, example_input: Tensor, batch: int = 256, repeats: int = 5,
               warmup: int = 2) -> float:
    """Samples per second at `batch`, from the median time of a batch forward.

    The batch cycles through the rows of `example_input` so that real, varied samples (and
    hence real MoE routing) are timed, however many rows were given.
    """
    rows = torch.arange(batch) % example_input.shape[0]
    x = example_input[rows].to(_device(model))
    return batch / _median_seconds(model, x, repeats, warmup)


def cost_report(model: nn.Module, in_shape: tuple[int, ...], example_input: Tensor | None = None,
                flops_batch: int = 64, latency_repeats: int = 20, throughput_batch: int = 256,
                throughput_repeats: int = 5, seed: int = 0) -> dict[str, float | int]:
    """params, active_params, flops_per_sample, latency_ms and throughput of `model`.

    Pass real samples as `example_input` for MoE models: FLOPs follow their routing. Without
    it, `flops_batch` standard-normal inputs of shape `in_shape` are drawn from `seed`.
    """
    if example_input is None:
        gen = torch.Generator().manual_seed(seed)
        example_input = torch.randn(flops_batch, *in_shape, generator=gen)
    elif tuple(example_input.shape[1:]) != tuple(in_shape):
        raise ValueError(f"example_input has sample shape {tuple(example_input.shape[1:])}, expected {tuple(in_shape)}")
    return {"params": count_params(model),
            "active_params": active_params(model),
            "flops_per_sample": flops_per_sample(model, example_input),
            "latency_ms": latency_ms(model, example_input, repeats=latency_repeats),
            "throughput": throughput(model, example_input, batch=throughput_batch, repeats=throughput_repeats)}


__all__ = ["active_params", "cost_report", "count_params", "flops_per_sample", "latency_ms", "throughput"]
