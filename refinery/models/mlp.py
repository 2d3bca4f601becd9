"""A residual MLP: flatten, project to `dim`, then `depth` pre-norm FFN blocks.

Each block's FFN is an upcycling site, exactly as in the transformer (one token per sample).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import Block


class MLP(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], num_classes: int, dim: int = 128, depth: int = 2,
                 mlp_ratio: float = 2.0, dropout: float = 0.0, **_unused):
        super().__init__()
        self.embed = nn.Linear(math.prod(in_shape), dim)
        hidden = int(dim * mlp_ratio)
        self.blocks = nn.ModuleList(Block(dim, 1, hidden, dropout, attention=False) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x.flatten(1)).unsqueeze(1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x.squeeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
