"""Random labelling (RL): Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020;
the RL baseline of Fan et al., "SalUn", ICLR 2024 (Eq. 4 without the mask):

    min_theta  E_{(x, y) in D_f, y' ~ U(C)} CE(theta; x, y')  +  E_{(x, y) in D_r} CE(theta; x, y)

Reference code: github.com/OPTML-Group/Unlearn-Saliency, `Classification/unlearn/RL.py` (`RL`)
inside `Classification/unlearn/impl.py` (`_iterative_unlearn_impl`), run as the README's
CIFAR-10 command (`--unlearn RL --unlearn_epochs 10 --unlearn_lr 0.013`). What it does, and
what `unlearn.random_label` (and `unlearn.salun`) do by default:
- one SGD optimizer for the whole run: momentum 0.9, weight decay 5e-4, no clipping, plain CE
  (no label smoothing); constant LR (its MultiStepLR milestones 91,136 are never reached);
- each epoch is a pass over D_f, every batch with labels drawn afresh from ALL C classes (so a
  label can be the true one, with probability 1/C), then a pass over D_r with its own labels;
  both loaders shuffled, batch 256; the model in train mode.

How `fit` runs it: one `fit` of one epoch per pass (D_f, then D_r, per epoch), so each pass
has the reference's own batches (a partial last batch in each part; one `fit` over D_f ∪ D_r
would mix the two at the boundary) and its own seeded shuffle. `fit` makes a fresh SGD per call,
so the momentum is carried across calls exactly: on the first step of a call,
`Hooks.after_backward` adds momentum * (the previous call's buffer) to the gradient, which
makes torch's first-step buffer `g + wd*theta + momentum*buf_prev`, the reference's update.
The LR is constant, so restarting the schedule per call changes nothing.

`order: "mixed"` is the reference's CIFAR-100 / TinyImageNet branch: per epoch one shuffled set
of D_f (labels drawn once per epoch from all C classes) and D_r.

Deviations: labels come from a generator seeded by (seed, epoch), not the global RNG; an MoE's
balance loss is added to the CE so its routers stay sane (zero for the reference's models);
parameters that do not require gradients stay frozen.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RandomLabelConfig, TrainConfig
from ..data.dataset import Arrays
from ..models.moe import routed_aux_loss
from ..train import Hooks, cross_entropy_loss, fit
from .base import UnlearnContext, register


def rl_recipe(ctx: UnlearnContext, cfg: RandomLabelConfig) -> TrainConfig:
    """One pass (epoch) of the reference's RL recipe; the model's own input pipeline
    (augmentation, precision) is kept, as the reference keeps its training transforms."""
    return TrainConfig.model_validate(dict(
        ctx.train_cfg.model_dump(), epochs=1, lr=cfg.lr, schedule="constant", optimizer="sgd",
        momentum=cfg.momentum, nesterov=False, weight_decay=cfg.weight_decay, label_smoothing=0.0,
        grad_clip=0.0, batch_size=cfg.batch_size, subset_fraction=1.0, msd_dropout=0.0, msd_samples=1))


def label_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + 7919 * epoch + 17) % (2**63 - 1))


def random_target_loss(num_classes: int, generator: torch.Generator):
    """CE against labels drawn per batch from all C classes (the reference's D_f pass)."""
    def loss(model, x, y, ids, at=None):
        target = torch.randint(0, num_classes, tuple(y.shape), generator=generator).to(y.device)
        return F.cross_entropy(model(x), target) + routed_aux_loss(model)
    return loss


def relabelled_data(ctx: UnlearnContext, epoch: int = 0) -> Arrays:
    """D_f with labels drawn from all C classes (seeded by (seed, epoch)) followed by D_r: the
    reference's CIFAR-100 branch (`order: mixed`), shuffled together by `fit`."""
    wrong = torch.randint(0, ctx.num_classes, (len(ctx.forget),), generator=label_generator(ctx.seed, epoch))
    return Arrays(torch.cat([ctx.forget.x.cpu(), ctx.retain.x.cpu()]), torch.cat([wrong, ctx.retain.y.cpu()]),
                  torch.cat([ctx.forget.ids.cpu(), ctx.retain.ids.cpu()]))


class CarriedSGD:
    """The hooks that make a sequence of `fit` calls behave as one SGD-with-momentum run, with an
    optional mask (SalUn): gradients of masked-out weights are zeroed before the step, and after
    it those weights are put back to their original values and their momentum is zeroed (as the
    reference's `_apply_mask_to_grads` / `_restore_masked_params`)."""

    def __init__(self, model: nn.Module, momentum: float, masks: dict[str, torch.Tensor] | None = None):
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.momentum = momentum
        self.masks = masks
        self.theta0 = {n: p.detach().clone() for n, p in self.params.items()} if masks is not None else {}
        self.buffers: dict[str, torch.Tensor] = {}
        self.first_step = True

    def start_pass(self) -> None:
        self.first_step = True

    def after_backward(self, model: nn.Module) -> None:
        for n, p in self.params.items():
            if p.grad is None:
                continue
            if self.masks is not None:
                p.grad.mul_(self.masks[n])
            if self.first_step and n in self.buffers:
                p.grad.add_(self.buffers[n], alpha=self.momentum)
        self.first_step = False

    @torch.no_grad()
    def after_step(self, model: nn.Module, opt: torch.optim.Optimizer) -> None:
        for n, p in self.params.items():
            state = opt.state.get(p, {})
            buf = state.get("momentum_buffer")
            if self.masks is not None:
                p.copy_(torch.where(self.masks[n], p, self.theta0[n]))
                if buf is not None:
                    buf.mul_(self.masks[n])
            if buf is not None:
                self.buffers[n] = buf

    def hooks(self, loss, on_epoch: Callable[[dict], object] | None = None) -> Hooks:
        return Hooks(loss=loss, after_backward=self.after_backward, after_step=self.after_step, on_epoch=on_epoch)


def _pass_seed(seed: int, epoch: int, part: int) -> int:
    return (seed * 1_000_003 + 2 * epoch + part) % (2**31 - 1)


def relabel_unlearn(ctx: UnlearnContext, model: nn.Module, cfg: RandomLabelConfig, desc: str,
                    masks: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Train `model` in place by the reference's RL loop (see the module docstring)."""
    recipe = rl_recipe(ctx, cfg)
    sgd = CarriedSGD(model, cfg.momentum, masks)
    plain_ce = cross_entropy_loss(0.0)
    params = list(sgd.params.values())

    def report(epoch: int):
        """Progress per unlearning epoch (after its D_r pass); never asks `fit` to stop."""
        if ctx.on_epoch is None:
            return None

        def on_epoch(record: dict) -> bool:
            ctx.on_epoch(dict(record, epoch=epoch + 1, epochs=cfg.epochs))
            return False
        return on_epoch

    for epoch in range(cfg.epochs):
        if cfg.order == "mixed":
            passes = [(relabelled_data(ctx, epoch), plain_ce, report(epoch))]
        else:
            passes = [(ctx.forget, random_target_loss(ctx.num_classes, label_generator(ctx.seed, epoch)), None),
                      (ctx.retain, plain_ce, report(epoch))]
        for part, (data, loss, on_epoch) in enumerate(passes):
            if len(data) == 0:
                continue
            sgd.start_pass()
            fit(model, data, recipe, seed=_pass_seed(ctx.seed, epoch, part), hooks=sgd.hooks(loss, on_epoch),
                params=params, desc=f"{desc} {epoch + 1}/{cfg.epochs}")
    return model.eval()


@register("random_label")
def random_label(ctx: UnlearnContext) -> nn.Module:
    model = copy.deepcopy(ctx.model)
    return relabel_unlearn(ctx, model, ctx.cfg.random_label, "random_label")
