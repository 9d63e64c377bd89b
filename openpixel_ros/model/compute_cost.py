"""Parameter and multiply-accumulate counts, from forward hooks (no third-party profiler).

Counted: convolutions, linear layers, and the two matrix products of
:class:`~openpixel_ros.model.cross_scale_attention.CrossScaleAttention`.
Element-wise work (activations, additions, normalisation, resizing, softmax)
is left out, as is customary; FLOPs are reported as ``2 x MACs``.
"""
from __future__ import annotations

import collections

import torch
from torch import nn

from .cross_scale_attention import CrossScaleAttention


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, *inputs, by_module: bool = False):
    """Multiply-accumulates of one ``module(*inputs)`` forward pass (no grad).

    Returns the total, or with ``by_module`` a dict from the top-level child
    name to its MACs.
    """
    totals = collections.Counter()
    handles = []

    def owner(name: str) -> str:
        return name.split(".", 1)[0] if name else "(root)"

    def conv_hook(name):
        def hook(m: nn.Conv2d, args, out):
            kh, kw = m.kernel_size
            totals[owner(name)] += out.numel() * (m.in_channels // m.groups) * kh * kw
        return hook

    def linear_hook(name):
        def hook(m: nn.Linear, args, out):
            totals[owner(name)] += out.numel() * m.in_features
        return hook

    def attention_hook(name):
        def hook(m: CrossScaleAttention, args, out):
            query_map, context_map = args[0], args[1]
            b = query_map.shape[0]
            nq = query_map.shape[2] * query_map.shape[3]
            nk = context_map.shape[2] * context_map.shape[3]
            dim = m.heads * m.head_dim
            totals[owner(name)] += 2 * b * nq * nk * dim  # Q K^T and attention x V
        return hook

    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook(name)))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook(name)))
        elif isinstance(m, CrossScaleAttention):
            handles.append(m.register_forward_hook(attention_hook(name)))
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return dict(totals) if by_module else sum(totals.values())
