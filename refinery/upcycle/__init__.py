"""Upcycling recipes (dense -> mixture of experts), registered by name; `upcycle.recipe` selects one.

A recipe is `fn(dense, dense_arch, cfg, data, seed) -> Upcycled`. It builds the routed model
(running any preliminary training itself, through `refinery.train.fit`) and says what the
stage's final `fit` trains (`params`, empty for none) and with which loss. The stage then
trains, evaluates, and adds the recipe's own metrics (`evaluate`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..data.dataset import Prepared
from ..train import FitResult, LossFn


@dataclass
class Upcycled:
    model: nn.Module
    arch: dict
    params: list[nn.Parameter]  # trained by the stage's final fit; empty: no final fit
    loss: LossFn | None = None  # that fit's loss; None: cross-entropy + MoE aux losses
    history: dict[str, FitResult] = field(default_factory=dict)  # preliminary fits, by name
    evaluate: Callable[[nn.Module, Prepared], dict] | None = None  # recipe-specific metrics


Recipe = Callable[..., Upcycled]
RECIPES: dict[str, Recipe] = {}


def register(name: str):
    def wrap(fn):
        RECIPES[name] = fn
        return fn
    return wrap


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"upcycle.recipe: unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


from . import dmu, mola, moepp, phatgoose, sparse  # noqa: E402,F401  (each registers itself)
