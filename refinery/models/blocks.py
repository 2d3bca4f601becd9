"""Transformer pieces shared by every backbone: the FFN (the site upcycling turns into experts),
multi-head self-attention, and the pre-norm block."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    """The dense FFN: Linear(d, h) -> GELU -> Linear(h, d)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


class SelfAttention(nn.Module):
    """Multi-head self-attention, optionally with the output gate of Qiu et al., "Gated Attention
    for Large Language Models" (2025): Y' = Y * sigmoid(X W_g + b_g) after SDPA, elementwise and
    head-specific (each head's channels get their own gate), computed from the same input X as
    the query. The gate adds non-linearity and sparsity between the value and output maps."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, gated: bool = False):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim) if gated else None
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, n, d)  # heads concatenated, so gate channels follow heads
        if self.gate is not None:
            y = y * torch.sigmoid(self.gate(x))
        return self.proj(y)


class Block(nn.Module):
    """Pre-norm transformer block. `ffn` is swapped for a mixture of experts by upcycling."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float = 0.0, attention: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim) if attention else None
        self.attn = SelfAttention(dim, heads, dropout) if attention else None
        self.norm2 = nn.LayerNorm(dim)
        self.ffn: nn.Module = FeedForward(dim, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn is not None:
            x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))
