"""The one training loop every stage reuses: teacher, upcycle, distill and unlearning methods.

AdamW (the fused kernel), a one-cycle / cosine / constant LR computed from the step (so
resuming needs no scheduler state), label smoothing, gradient clipping, batches sliced from in-memory tensors
(optionally an RS2 random subset per epoch), Multi-Sample Dropout and crop/flip augmentation
(refinery/recipe.py, through the loss), and an epoch checkpoint (Zarr, no pickle, written on a
background thread) that makes a killed run resume where it stopped.

Stages customise it through small hooks instead of copying it:
- `loss(model, x, y, ids, at) -> loss` replaces cross-entropy (KD, random labels, ...); `at` is
  the `Step` being taken (epoch, step in the epoch, totals), e.g. for DKD's warm-up;
- `after_backward(model)` edits gradients before the step (SalUn's saliency mask);
- `after_step(model, opt)` runs after each optimizer step (SalUn restores masked-out weights);
- `on_epoch(record) -> stop?` reports progress (the tasks layer turns it into a Prefect artifact)
  and may end training cleanly after that epoch by returning True (the audit's relearn check).

The optimizer is `train.optimizer` (fused AdamW, or SGD with momentum as SalUn's recipe uses);
`params` may be plain parameters or torch-style parameter groups, each with an optional
`lr_scale` on the scheduled LR and its own `weight_decay`.

A resume checkpoint carries a run key over everything the run's result depends on: the train
config, the seed, the architecture, the model's initial state (so a different teacher or init
is a different run), the data, and the caller's `identity` (the stage's config section, the
loss and its options, the content hashes of the stage's inputs). Only the same run resumes.

Shuffling and dropout are seeded per (seed, epoch), so a resumed run is bit-identical to an
uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import accel as A
from .config import TrainConfig
from .data.dataset import Arrays
from .models.moe import routed_aux_loss, routed_layers
from .recipe import augmented, multi_sample_dropout_loss
from .store import load_checkpoint, packed_checkpoint
from .store.cache import read_cache


@dataclass(frozen=True)
class Step:
    """Where training is: `epoch` counts from 0, `step` within the epoch from 0."""

    epoch: int = 0
    step: int = 0
    steps_per_epoch: int = 1
    epochs: int = 1

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, Step], torch.Tensor]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing is written from such a model."""


@dataclass
class Hooks:
    loss: LossFn | None = None
    after_backward: Callable[[nn.Module], None] | None = None
    after_step: Callable[[nn.Module, torch.optim.Optimizer], None] | None = None
    on_epoch: Callable[[dict], bool | None] | None = None  # True: stop after this epoch


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0
    seconds: float = 0.0
    stopped_early: bool = False  # on_epoch asked to stop before cfg.epochs


def cross_entropy_loss(label_smoothing: float,
                       aux: Callable[[nn.Module], torch.Tensor | float] = routed_aux_loss) -> LossFn:
    """Cross-entropy plus `aux`: by default the balance/z-losses of every routed layer."""
    def loss(model, x, y, ids, at=None):
        return F.cross_entropy(model(x), y, label_smoothing=label_smoothing) + aux(model)
    return loss


def aux_loss_of_layers(model: nn.Module) -> Callable[[nn.Module], torch.Tensor | float]:
    """`routed_aux_loss` over the routed layers `model` has now, found once: walking the
    modules every step cost 4 ms an epoch for the MNIST-1D CCT."""
    layers = routed_layers(model)
    return lambda _model: sum((layer.aux_loss for layer in layers), 0.0)


def lr_factor(schedule: str, progress: float) -> float:
    """LR multiplier at `progress` in [0, 1] of training."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    warm = 0.25  # one-cycle: cosine up from lr/25 over the first quarter, then cosine down to ~0
    if progress < warm:
        return 0.04 + 0.96 * 0.5 * (1 - math.cos(math.pi * progress / warm))
    return 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm))) + 1e-4


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


def subset_size(n: int, fraction: float) -> int:
    return n if fraction >= 1.0 else max(1, round(fraction * n))


def epoch_indices(n: int, fraction: float, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of one epoch. RS2 without replacement (Okanovic et al., "Repeated Random
    Sampling for Minimizing the Time-to-Accuracy of Learning", 2023, Alg. 1): epoch e takes the
    e-th slice of size r*n from a stream of random permutations, one per pass over the data, so
    no sample repeats until all were seen. Pass j's permutation is seeded by (seed, j) alone:
    with r = 1 a pass is an epoch, which is the full-data shuffle."""
    size, start, parts = subset_size(n, fraction), epoch * subset_size(n, fraction), []
    while sum(len(p) for p in parts) < size:
        taken = sum(len(p) for p in parts)
        data_pass, offset = divmod(start + taken, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, data_pass)))
        parts.append(perm[offset:offset + size - taken])
    return torch.cat(parts)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def accuracy(model: nn.Module, data: Arrays) -> float:
    if len(data) == 0:
        return float("nan")
    return float((predict_logits(model, data.x).argmax(1) == data.y.cpu()).float().mean())


def clip_grad_norm(opt: torch.optim.Optimizer, params: list[nn.Parameter], max_norm: float) -> None:
    """Scale the gradients by min(1, max_norm / ||g||), ||g|| over all of them (torch's
    clip_grad_norm_, same math). A fused AdamW takes the factor into its kernel as `grad_scale`
    (the attribute torch's GradScaler sets for it), which saves a pass over every gradient:
    0.1 ms a step for the MNIST-1D CCT on this CPU instead of 0.3. Other optimizers get the pass."""
    if not opt.defaults.get("fused"):
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        total = torch.nn.utils.get_total_norm(grads).float()  # the kernel takes a float32 scale
        opt.grad_scale = (total + 1e-6).div_(max_norm).clamp_(min=1.0)


# --------------------------------------------------------------------------- checkpoints
def run_key(cfg: TrainConfig, seed: int, data: Arrays, model: nn.Module, groups: list[dict],
            arch: dict | None, identity: dict | None) -> str:
    """Identifies a run, so a checkpoint is only resumed by the very run that wrote it: the
    config, seed, architecture, the caller's identity (stage config, loss, input hashes), which
    parameters train in which group, the model's state before training and the data."""
    names = {id(p): n for n, p in model.named_parameters()}
    trained = [[names.get(id(p), list(p.shape)) for p in g["params"]] for g in groups]
    options = [{k: v for k, v in g.items() if k != "params"} for g in groups]
    head = [cfg.model_dump(mode="json"), seed, arch or {}, identity or {}, trained, options]
    h = hashlib.sha256(json.dumps(head, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(_tensor_bytes(tensor))
    for tensor in (data.x, data.y, data.ids):
        h.update(_tensor_bytes(tensor))
    return h.hexdigest()[:16]


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its bits
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def _snapshot_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int, key: str,
                    history: list[dict], arch: dict) -> Callable[[], str]:
    """Copy model and optimizer state now; the returned function writes the copy."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    state = opt.state_dict()
    for idx, slots in state["state"].items():
        for name, value in slots.items():
            tensors[f"optim/{idx}/{name}"] = torch.as_tensor(value)
    return packed_checkpoint(path, tensors, arch, step=epoch,
                             extra={"run_key": key, "history": history, "param_groups": state["param_groups"]})


CHECKPOINT_THREAD = "refinery-checkpoint"


class BackgroundWriter:
    """Writes each epoch's resume checkpoint on a second thread while the next epoch trains
    (10-14 ms a save here, about 1% of an MNIST-1D epoch, mostly Zarr's own machinery).
    One write at a time; a failed write is raised at the next save or at `wait()`. The write is
    atomic, so a run killed mid-write resumes from the previous epoch, as it would anyway."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, write: Callable[[], object]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(write,), name=CHECKPOINT_THREAD)
        self._thread.start()

    def _run(self, write: Callable[[], object]) -> None:
        try:
            write()
        except BaseException as exc:  # re-raised on the training thread
            self._error = exc

    def wait(self, raise_error: bool = True) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            if raise_error:
                raise error


def _load_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, key: str) -> tuple[int, list[dict]]:
    loaded = read_cache(path, load_checkpoint)  # unreadable: dropped, and the run starts afresh
    if loaded is None:
        return 0, []
    tensors, attrs = loaded
    extra = attrs.get("extra", {})
    if extra.get("run_key") != key:
        return 0, []  # a checkpoint of some other run: start afresh
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    opt_state: dict = {"state": {}, "param_groups": extra["param_groups"]}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, idx, slot = name.split("/")
            opt_state["state"].setdefault(int(idx), {})[slot] = value
    opt.load_state_dict(opt_state)
    return int(attrs["step"]), list(extra.get("history", []))


# --------------------------------------------------------------------------- the loop
ParamsArg = Iterable[nn.Parameter] | Iterable[dict]


def param_groups(model: nn.Module, params: ParamsArg | None, cfg: TrainConfig) -> list[dict]:
    """torch-style parameter groups of the trainable parameters: `params` may be parameters or
    groups (dicts with "params" and optional "lr_scale", "weight_decay"); default: the model's."""
    items = list(params) if params is not None else list(model.parameters())
    groups = items if items and isinstance(items[0], dict) else [{"params": items}]
    out = []
    for group in groups:
        trainable = [p for p in group["params"] if p.requires_grad]
        if trainable:
            out.append({"lr_scale": 1.0, "weight_decay": cfg.weight_decay,
                        **{k: v for k, v in group.items() if k != "params"}, "params": trainable})
    return out


def make_optimizer(cfg: TrainConfig, groups: list[dict], device: torch.device) -> torch.optim.Optimizer:
    """Fused AdamW (one kernel over every tensor: 0.23 ms per step for the MNIST-1D CCT on this
    CPU against 1.35 ms for torch's default per-tensor loop; the same math), or SGD with
    `momentum` (SalUn's and most unlearning references' recipe)."""
    params = [p for g in groups for p in g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov)
    fused = device.type in ("cpu", "cuda") and all(p.dtype.is_floating_point for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def fit(model: nn.Module, train: Arrays, cfg: TrainConfig, *, seed: int, val: Arrays | None = None,
        hooks: Hooks | None = None, params: ParamsArg | None = None,
        checkpoint: Path | None = None, arch: dict | None = None, identity: dict | None = None,
        desc: str = "train") -> FitResult:
    """Train `model` in place. With `checkpoint`, save every epoch and resume from it when the
    checkpoint's run key (see `run_key`; `identity` is the caller's part of it) matches."""
    hooks = hooks or Hooks()
    aux = aux_loss_of_layers(model)
    loss_fn = hooks.loss or (
        cross_entropy_loss(cfg.label_smoothing, aux) if cfg.msd_dropout == 0 else
        multi_sample_dropout_loss(cfg.msd_samples, cfg.msd_dropout, cfg.label_smoothing, aux))
    if cfg.augment_crop or cfg.augment_flip:
        loss_fn = augmented(loss_fn, cfg.augment_crop, cfg.augment_flip)
    device = next(model.parameters()).device
    groups = param_groups(model, params, cfg)
    key = run_key(cfg, seed, train, model, groups, arch, identity) if checkpoint else ""
    opt = make_optimizer(cfg, groups, device)
    trained = [p for g in groups for p in g["params"]]
    accel = A.plan(cfg, device, train)
    runner, data = A.place(accel, model, train)
    steps_per_epoch = max(1, math.ceil(subset_size(len(data), cfg.subset_fraction) / cfg.batch_size))  # RS2
    start, history = _load_state(checkpoint, model, opt, key) if checkpoint else (0, [])
    result = FitResult(history=history, resumed_from=start)
    t0 = time.perf_counter()
    writer = BackgroundWriter()
    bar = tqdm(range(start, cfg.epochs), desc=desc, unit="epoch", leave=False, dynamic_ncols=True)
    try:
        for epoch in bar:
            at = Step(epoch=epoch, steps_per_epoch=steps_per_epoch, epochs=cfg.epochs)
            record = _train_epoch(model, runner, data, accel, cfg, opt, trained, loss_fn, hooks, at, seed)
            if val is not None and len(val):
                record["val_acc"] = accuracy(model, val)
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k in ("loss", "val_acc")})
            if checkpoint:
                writer.submit(_snapshot_state(checkpoint, model, opt, epoch + 1, key, history, arch or {}))
            if hooks.on_epoch and hooks.on_epoch(dict(record, epochs=cfg.epochs)) and epoch + 1 < cfg.epochs:
                result.stopped_early = True
                break
    except BaseException:
        writer.wait(raise_error=False)  # the training error is the one to report, not a write's
        raise
    writer.wait()
    result.seconds = time.perf_counter() - t0
    model.eval()
    return result


def _train_epoch(model, runner, data, accel, cfg, opt, params, loss_fn, hooks, at: Step, seed: int) -> dict:
    """One epoch. `runner` runs the forward pass (the model, or its compiled form); hooks see the model."""
    model.train()
    device = accel.device
    torch.manual_seed(epoch_seed(seed, at.epoch))  # dropout masks
    order = epoch_indices(len(data), cfg.subset_fraction, seed, at.epoch).to(data.x.device)
    loss_sum = torch.zeros((), device=device)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    for step in range(at.steps_per_epoch):
        at = replace(at, step=step)
        lr = cfg.lr * lr_factor(cfg.schedule, at.global_step / at.total_steps)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        with accel.autocast():
            loss = loss_fn(runner, *A.batch(accel, data, idx), at)
        # Record the first non-finite step without a host sync on every step.
        bad = ~torch.isfinite(loss.detach())
        first_bad = torch.where(bad & (first_bad < 0), torch.tensor(step, device=device), first_bad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if hooks.after_backward:
            hooks.after_backward(model)
        if cfg.grad_clip > 0:
            clip_grad_norm(opt, params, cfg.grad_clip)
        opt.step()
        if hooks.after_step:
            hooks.after_step(model, opt)
        loss_sum += loss.detach()
    if int(first_bad) >= 0:
        raise TrainingDiverged(f"non-finite loss at epoch {at.epoch + 1}, step {int(first_bad) + 1}; "
                               f"lower the learning rate (now {cfg.lr:g}) or check the data for NaNs")
    return {"epoch": at.epoch + 1, "loss": float(loss_sum) / at.steps_per_epoch, "lr": lr}
