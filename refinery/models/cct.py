"""Compact Convolutional Transformer (Hassani et al., "Escaping the Big Data Paradigm with
Compact Transformers", 2021).

A convolutional tokenizer (conv, ReLU, max-pool) turns an image (Conv2d) or a 1-D signal
(Conv1d) into tokens; pre-norm transformer blocks mix them; SeqPool replaces the class token
with attention-weighted pooling, z = softmax(g(x_L))^T x_L (Eq. 2 of the paper).
`gated_attention` adds the sigmoid output gate of Gated Attention (see blocks.SelfAttention).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block, SelfAttention


class ConvTokenizer(nn.Module):
    def __init__(self, in_channels: int, channels: int, dim: int, kernel: int, ndim: int):
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv1d
        pool = nn.MaxPool2d if ndim == 2 else nn.MaxPool1d
        self.net = nn.Sequential(
            conv(in_channels, channels, kernel, padding=kernel // 2), nn.ReLU(),
            conv(channels, dim, kernel, padding=kernel // 2), nn.ReLU(),
            pool(3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).transpose(1, 2)  # (B, tokens, dim)


class SeqPool(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(self.score(x), dim=1)  # (B, N, 1)
        return (weights * x).sum(dim=1)


class CCT(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], num_classes: int, dim: int = 64, depth: int = 2,
                 heads: int = 2, mlp_ratio: float = 2.0, conv_channels: int = 32, conv_kernel: int = 3,
                 dropout: float = 0.0, gated_attention: bool = False, **_unused):
        super().__init__()
        ndim = len(in_shape) - 1
        if ndim not in (1, 2):
            raise ValueError(f"CCT takes (C, L) or (C, H, W) inputs, got shape {in_shape}")
        self.tokenizer = ConvTokenizer(in_shape[0], conv_channels, dim, conv_kernel, ndim)
        with torch.no_grad():
            tokens = self.tokenizer(torch.zeros(1, *in_shape)).shape[1]
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        hidden = int(dim * mlp_ratio)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, dropout) for _ in range(depth))
        if gated_attention:
            for block in self.blocks:
                block.attn = SelfAttention(dim, heads, dropout, gated=True)
        self.norm = nn.LayerNorm(dim)
        self.pool = SeqPool(dim)
        self.head = nn.Linear(dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokenizer(x) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.pool(self.norm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
