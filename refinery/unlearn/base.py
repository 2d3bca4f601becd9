"""What every unlearning method receives, and the registry that picks a method by name.

A method is a function `UnlearnContext -> nn.Module` that returns a NEW model: the original
in `ctx.model` is never modified (methods deepcopy it, or build a fresh one). Methods that
train call `refinery.train.fit` with hooks; none copies the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import TrainConfig, UnlearnConfig
from ..data.dataset import Arrays
from ..train import Hooks, LossFn, cross_entropy_loss, fit


@dataclass
class UnlearnContext:
    """Everything a method may use. D_r and D_f partition the training split by sample id."""

    model: nn.Module          # the trained original model; methods must NOT modify it (deepcopy first)
    arch: dict                # to rebuild a fresh model with build_model(arch)
    retain: Arrays            # D_r = train minus forget
    forget: Arrays            # D_f
    train_cfg: TrainConfig    # the model's own training recipe (used by retrain)
    seed: int
    cfg: UnlearnConfig        # per-method settings: cfg.ssd.alpha, cfg.ssd.lam, cfg.finetune.epochs/lr
    # Makes the loss the model was trained with, if not plain CE: a new object per call, so a
    # loss with state of its own (an auxiliary head, a router) starts fresh for every method.
    model_loss: Callable[[], LossFn] | None = None
    on_epoch: Callable[[dict], None] | None = None  # progress callback passed to fit
    val: Arrays | None = None  # held-out split for choosing hyperparameters (never the test split)

    def fit_own_loss(self, model: nn.Module, data: Arrays, cfg: TrainConfig, desc: str) -> None:
        """Train `model` with its own loss. A distillation loss with parts of its own (an
        auxiliary head, a router) trains attached to the model and is taken off afterwards."""
        from ..distill import attached

        loss = self.loss()
        torch.manual_seed(self.seed)  # a loss's own parts (an auxiliary head) start the same in every method
        with attached(model, loss):
            fit(model, data, cfg, seed=self.seed, hooks=Hooks(loss=loss, on_epoch=self.on_epoch),
                params=model.parameters(), desc=desc)

    def loss(self) -> LossFn:
        """A fresh copy of the model's own training loss: `model_loss()`, else CE with the
        recipe's label smoothing. Never shared between methods, so no method's result depends
        on which methods ran before it."""
        return self.model_loss() if self.model_loss else cross_entropy_loss(self.train_cfg.label_smoothing)

    def full(self) -> Arrays:
        """D = D_r ∪ D_f, ordered by sample id (the order of the prepared training split)."""
        return self.retain.union(self.forget)

    @property
    def num_classes(self) -> int:
        return int(self.arch["num_classes"])

    def short_recipe(self, epochs: int, lr: float) -> TrainConfig:
        """The model's recipe (batch size, weight decay, smoothing, clipping) with a method's own
        epochs and LR at a constant schedule: what FT, GA, RL and SalUn train with."""
        return TrainConfig.model_validate(
            dict(self.train_cfg.model_dump(), epochs=epochs, lr=lr, schedule="constant"))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


Method = Callable[..., nn.Module]  # (ctx: UnlearnContext, **options) -> a new model
METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    """Decorator: make `fn` available to `run_method(name, ...)`."""
    def add(fn: Method) -> Method:
        old = METHODS.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"unlearning method {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        METHODS[name] = fn
        return fn
    return add


def run_method(name: str, ctx: UnlearnContext, **options) -> nn.Module:
    """Run the unlearning method `name`; return the unlearned model (a new object).

    `options` go to the method as keywords, e.g. `run_method("ssd", ctx, full_importance=I_D)`."""
    if name not in METHODS:
        raise ValueError(f"unknown unlearning method {name!r}; known: {', '.join(sorted(METHODS))}")
    out = METHODS[name](ctx, **options)
    if out is ctx.model:
        raise RuntimeError(f"unlearning method {name!r} returned the original model object; "
                           "methods must return a new model and leave the original untouched")
    return out
