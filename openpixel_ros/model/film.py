"""FiLM conditioning: per-channel scale and shift of normalised features from a conditioning vector.

The conditioning vector is the lighting-adaptation vector (an entropy score
plus image statistics, :data:`openpixel_ros.model_contract.CONDITIONING_SIZE`
values), fed to the model as a second input. A small MLP turns it into one
``(gamma, beta)`` pair per modulated layer; the layer then computes
``act(gamma * norm(conv(x)) + beta)``.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn



class FiLMGenerator(nn.Module):
    """MLP from a conditioning vector ``[B, K]`` to ``{name: (gamma, beta)}``, each ``[B, C, 1, 1]``.

    The output layer starts at zero and gamma is ``1 + output``, so a fresh
    generator is the identity for every conditioning vector: a pretrained
    network is unchanged until training teaches it to react to lighting.
    """

    def __init__(self, conditioning_size: int, channels: Mapping[str, int], hidden: int = 32):
        super().__init__()
        if conditioning_size <= 0:
            raise ValueError("conditioning_size must be positive")
        self.conditioning_size = conditioning_size
        self.channels = dict(channels)
        total = sum(self.channels.values())
        self.mlp = nn.Sequential(nn.Linear(conditioning_size, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 2 * total))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, conditioning: torch.Tensor) -> dict:
        params = self.mlp(conditioning)
        total = sum(self.channels.values())
        gammas, betas = params[:, :total], params[:, total:]
        out, start = {}, 0
        for name, c in self.channels.items():
            gamma = 1.0 + gammas[:, start:start + c]
            beta = betas[:, start:start + c]
            out[name] = (gamma[:, :, None, None], beta[:, :, None, None])
            start += c
        return out
