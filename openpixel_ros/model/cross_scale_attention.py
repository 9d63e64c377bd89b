"""Cross-scale attention: high-resolution positions attend to a low-resolution feature map.

Queries come from the high-resolution map, keys and values from the
low-resolution one; each head computes ``softmax(Q K^T / sqrt(d))`` with the
softmax over the key axis, so every query position gets a convex combination
of the low-resolution values. The heads are concatenated, projected back to
the query map's channels and added to it (residual), so the output has the
query map's shape.

There is no positional encoding: Q, K and V are 1x1 convolutions, so the
block is equivariant to permutations of the query positions and invariant
to permutations of the key positions. Where things are comes from the
convolutional features themselves.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class CrossScaleAttention(nn.Module):
    """Multi-head attention from ``query_map`` [B, Cq, H, W] to ``context_map`` [B, Ck, h, w].

    ``dim`` is the total attention width (split over ``heads``). Returns
    ``query_map + proj(attention)`` of shape [B, Cq, H, W], plus the attention
    weights [B, heads, H*W, h*w] when ``return_attention`` is set.
    """

    def __init__(self, query_channels: int, context_channels: int, dim: int = 64, heads: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.to_query = nn.Conv2d(query_channels, dim, 1)
        self.to_key = nn.Conv2d(context_channels, dim, 1)
        self.to_value = nn.Conv2d(context_channels, dim, 1)
        self.proj = nn.Conv2d(dim, query_channels, 1)

    def forward(self, query_map: torch.Tensor, context_map: torch.Tensor, return_attention: bool = False):
        b, _, h, w = query_map.shape
        # [B, heads, d, N] for all three; queries and values are transposed to [B, heads, N, d] below.
        q = self.to_query(query_map).reshape(b, self.heads, self.head_dim, -1)
        k = self.to_key(context_map).reshape(b, self.heads, self.head_dim, -1)
        v = self.to_value(context_map).reshape(b, self.heads, self.head_dim, -1)
        logits = torch.matmul(q.transpose(2, 3) * self.scale, k)  # [B, heads, Nq, Nk]
        attention = torch.softmax(logits, dim=-1)  # over keys
        mixed = torch.matmul(attention, v.transpose(2, 3))  # [B, heads, Nq, d]
        mixed = mixed.transpose(2, 3).reshape(b, self.heads * self.head_dim, h, w)
        out = query_map + self.proj(mixed)
        return (out, attention) if return_attention else out
