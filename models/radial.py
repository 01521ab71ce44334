"""Radial basis: Bessel functions times a smooth polynomial cutoff envelope (NequIP/DimeNet style), lengths in bohr."""

from __future__ import annotations

import math

import torch
from torch import nn


class BesselBasis(nn.Module):
    """r [*] (bohr) -> [*, n] = sqrt(2/c) sin(k pi r / c) / r * envelope(r / c); zero beyond the cutoff c."""

    def __init__(self, n: int, cutoff: float, p: int = 6):
        super().__init__()
        self.n, self.cutoff, self.p = n, float(cutoff), p
        self.register_buffer("freq", torch.arange(1, n + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff)

    def envelope(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        env = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
        return env * (x < 1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.clamp_min(1e-9)[..., None]
        return math.sqrt(2 / self.cutoff) * torch.sin(self.freq * r) / r * self.envelope(r / self.cutoff)
