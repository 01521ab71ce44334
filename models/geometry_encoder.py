"""E(3)-equivariant geometry encoder: atoms (Z, positions) -> node irreps features (NequIP-style convolutions).

Each layer: self-interaction (``o3.Linear``), a channel-wise ('uvu') tensor product of node features with the edge
spherical harmonics whose weights come from an MLP of the Bessel radial basis, sum over neighbours within the
cutoff (radius graph built with plain torch), a linear mix, and an e3nn gate nonlinearity; residual when shapes match.
Positions and the cutoff are in bohr (default 5 Å).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import nn as enn
from e3nn import o3
from torch import nn

from rtml.datasets.units import ANGSTROM_TO_BOHR
from rtml.models.dtype import outside_autocast
from rtml.models.radial import BesselBasis
from rtml.models.radius_graph import radius_graph


@dataclass(kw_only=True)
class GeometryEncoderConfig:
    irreps_hidden: str = "32x0e + 16x1o + 8x2e"  # hidden features of each interaction layer (e3nn irreps)
    n_layers: int = 4  # equivariant message-passing layers
    cutoff_bohr: float = 5.0 * ANGSTROM_TO_BOHR  # 5 Å
    n_radial: int = 8  # Bessel radial basis functions of the interatomic distance
    lmax_sh: int = 2  # highest L of the edge spherical harmonics
    radial_hidden: int = 32  # hidden width of the radial MLP
    avg_neighbors: float = 6.0  # messages are summed and divided by sqrt(this)
    n_elements: int = 119  # rows of the atomic-number embedding (Z < this)


GEOMETRY_PRESETS = {
    "debug": GeometryEncoderConfig(irreps_hidden="8x0e + 4x1o + 2x2e", n_layers=2, n_radial=6, radial_hidden=16),
    "small": GeometryEncoderConfig(irreps_hidden="16x0e + 8x1o + 4x2e", n_layers=3, radial_hidden=32),
    "base": GeometryEncoderConfig(),
}


def _gate(irreps_out: o3.Irreps) -> enn.Gate:
    scalars = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l > 0])
    gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
    return enn.Gate(scalars, [torch.nn.functional.silu] * len(scalars), gates,
                    [torch.sigmoid] * len(gates), gated)


class Interaction(nn.Module):
    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, irreps_sh: o3.Irreps, cfg: GeometryEncoderConfig):
        super().__init__()
        self.irreps_in, self.irreps_out = irreps_in, irreps_out
        self.gate = _gate(irreps_out)
        target = {ir for _, ir in self.gate.irreps_in}
        mid, instr = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in target:
                        instr.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        mid = o3.Irreps(mid)
        mid_sorted, perm, _ = mid.sort()
        instr = [(i, j, perm[k], mode, w) for i, j, k, mode, w in instr]
        self.lin_in = o3.Linear(irreps_in, irreps_in)
        self.tp = o3.TensorProduct(irreps_in, irreps_sh, mid_sorted, instr, shared_weights=False, internal_weights=False)
        self.radial = enn.FullyConnectedNet([cfg.n_radial, cfg.radial_hidden, self.tp.weight_numel],
                                            torch.nn.functional.silu)
        self.lin_out = o3.Linear(mid_sorted.simplify(), self.gate.irreps_in)
        self.self_conn = o3.Linear(irreps_in, self.gate.irreps_in)
        self.norm = cfg.avg_neighbors ** -0.5

    def forward(self, x, edge_index, sh, radial):
        src, dst = edge_index
        msg = self.tp(self.lin_in(x)[src], sh, self.radial(radial))  # [E, mid]
        agg = torch.zeros(x.shape[0], msg.shape[-1], dtype=msg.dtype, device=msg.device).index_add(0, dst, msg)
        out = self.gate(self.lin_out(agg * self.norm) + self.self_conn(x))
        return out + x if self.irreps_out == self.irreps_in else out


class GeometryEncoder(nn.Module):
    """(Z [n], pos [n, 3] bohr, batch [n]) -> node features [n, irreps_out.dim]; equivariant under rotations."""

    def __init__(self, cfg: GeometryEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.irreps_out = o3.Irreps(cfg.irreps_hidden)
        n0 = sum(m for m, ir in self.irreps_out if ir == o3.Irrep("0e"))
        self.irreps_in = o3.Irreps(f"{n0}x0e")  # the element embedding
        self.irreps_sh = o3.Irreps.spherical_harmonics(cfg.lmax_sh)
        self.embed = nn.Embedding(cfg.n_elements, n0)
        self.cutoff = cfg.cutoff_bohr
        self.radial = BesselBasis(cfg.n_radial, self.cutoff)
        layers, irreps = [], self.irreps_in
        for _ in range(cfg.n_layers):
            layers.append(Interaction(irreps, self.irreps_out, self.irreps_sh, cfg))
            irreps = self.irreps_out
        self.layers = nn.ModuleList(layers)

    @outside_autocast
    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        edge_index = radius_graph(pos, self.cutoff, batch)  # [2, E]
        vec = pos[edge_index[0]] - pos[edge_index[1]]  # [E, 3] bohr, receiver -> sender
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        radial = self.radial(vec.norm(dim=-1))  # [E, n_radial]
        x = self.embed(z).to(pos.dtype)  # [n, n0]
        for layer in self.layers:
            x = layer(x, edge_index, sh, radial)
        return x  # [n, irreps_out.dim]
