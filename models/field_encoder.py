"""Field encoder: the electric field E(t) as an L=1 odd-parity irrep (1x1o, e3nn order x, y, z), coupled to the
geometry features of every atom by an e3nn fully connected tensor product. Linear in E: zero field, zero output.

Input E in atomic units is multiplied by ``field_scale`` (default 100: typical kicks/pulses are 1e-3..1e-2 a.u.).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import o3
from torch import nn

from rtml.models.dtype import outside_autocast


@dataclass(kw_only=True)
class FieldEncoderConfig:
    irreps_out: str = "16x0e + 8x1o + 8x1e + 4x2e"  # field features (e3nn irreps)
    field_scale: float = 100.0  # E in a.u. is multiplied by this before encoding (kicks and pulses are 1e-3..1e-1 a.u.)


FIELD_PRESETS = {
    "debug": FieldEncoderConfig(irreps_out="4x0e + 2x1o + 2x1e + 2x2e"),
    "small": FieldEncoderConfig(irreps_out="8x0e + 4x1o + 4x1e + 2x2e"),
    "base": FieldEncoderConfig(),
}


class FieldEncoder(nn.Module):
    """(geometry features [*, A, irreps_geo.dim], E [*, 3] or per atom [*, A, 3] a.u.) -> [*, A, irreps_out.dim]."""

    def __init__(self, irreps_geo: o3.Irreps | str, cfg: FieldEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.irreps_in1, self.irreps_in2 = o3.Irreps(irreps_geo), o3.Irreps("1x1o")
        self.irreps_out = o3.Irreps(cfg.irreps_out)
        self.tp = o3.FullyConnectedTensorProduct(self.irreps_in1, self.irreps_in2, self.irreps_out)

    @outside_autocast
    def forward(self, geo: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        e = field * self.cfg.field_scale
        if e.dim() < geo.dim():
            e = e.unsqueeze(-2)
        e = e.expand(*geo.shape[:-1], 3)  # [*, A, 3]
        return self.tp(geo, e)
