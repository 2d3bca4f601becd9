"""Upcycling recipes (dense -> mixture of experts), registered by name; `upcycle.recipe` selects one."""
from __future__ import annotations

from typing import Callable

from torch import nn

RECIPES: dict[str, Callable[..., tuple[nn.Module, dict]]] = {}


def register(name: str):
    def wrap(fn):
        RECIPES[name] = fn
        return fn
    return wrap


def get_recipe(name: str) -> Callable[..., tuple[nn.Module, dict]]:
    if name not in RECIPES:
        raise ValueError(f"upcycle.recipe: unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


from . import sparse  # noqa: E402,F401  (registers itself)
