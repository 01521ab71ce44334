"""Variable-basis density encoder and block decoder, exactly rotation-equivariant.

A spin-resolved matrix in the Löwdin basis is turned into 4 real channels (Re/Im of α+β and α−β) and cut into
shell-pair blocks (:mod:`rtml.models.layout`); every block of shells (l1, l2) is mapped by its orthonormal
Clebsch-Gordan basis to the irreps L = |l1-l2| .. l1+l2, parity (-1)^(l1+l2) — no information is lost and nothing
breaks equivariance (the guide's scalar pooling would for p/d blocks).

* :class:`PairEmbedding` — static invariant features of every shell pair: element, l and rank of both shells,
  Bessel radial basis of the atom distance, on-site flag, geometry scalars of both atoms. [P, d_pair].
* :class:`DensityEncoder` — pair irreps -> per-atom irreps (L <= lmax, both parities, ``mul`` channels): a shared
  channel mix per (L, p) times an invariant per-pair weight, summed over the pairs of each atom.
* :class:`BlockDecoder` — per pair and irrep, a linear combination of equivariant *sources* with weights = (static
  per-pair weights from the pair embedding) × (dynamic per-pair gates from the latents of both atoms). Sources:
  the Δρ pair irreps and both atoms' density irreps of Δρ — all linear in Δρ, so the output vanishes with it (ρ,
  geometry and field sources would add a Δρ-independent offset; before issue 29 they were built and multiplied
  by zero: :func:`upgrade_decoder_state` reads those model files). Output: ``n_out`` real matrices
  [*, n_out, B, N, N] in PySCF AO order.
Parameter count is fixed by the config (all (L, p) up to 2·l_shell_max are created), never by the molecules seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import o3
from torch import nn

from rtml.models.layout import MAX_SHELL_RANK, BasisLayout
from rtml.models.radial import BesselBasis


@dataclass(kw_only=True)
class DensityCodecConfig:
    mul: int = 16  # channels per (L, p) of the atom density features
    lmax: int = 2  # highest L of atom density features
    l_shell_max: int = 2  # highest shell l supported (d); decoder irreps go to 2 * l_shell_max
    d_pair: int = 32  # width of the shell-pair embedding
    n_radial: int = 8  # Bessel radial basis functions of the shell-pair distance
    cutoff_bohr: float = 20.0  # radial basis range of shell pairs (all pairs are kept)
    delta_scale: float = 1000.0  # Δρ is multiplied by this before encoding
    delta_saturation: float | None = None  # soft Δρ encoding: delta_scale·Δρ / (1 + ‖Δρ‖ / this) (None: linear)
    n_elements: int = 119  # rows of the atomic-number embedding (Z < this)


CODEC_PRESETS = {
    "debug": DensityCodecConfig(mul=4, d_pair=16, n_radial=6),
    "small": DensityCodecConfig(mul=8, d_pair=32),
    "base": DensityCodecConfig(),
}


def keys_upto(lmax: int) -> list[tuple[int, str]]:
    return [(L, p) for L in range(lmax + 1) for p in ("e", "o")]


def irrep_mul(irreps: o3.Irreps, L: int, p: str) -> int:
    ir = o3.Irrep(L, 1 if p == "e" else -1)
    return sum(m for m, i in irreps if i == ir)


def split_irreps(x: torch.Tensor, irreps: o3.Irreps) -> dict[tuple[int, str], torch.Tensor]:
    """[*, irreps.dim] -> {(L, p): [*, mul, 2L+1]} (channels of equal irrep concatenated)."""
    out: dict[tuple[int, str], list] = {}
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        key = (ir.l, "e" if ir.p == 1 else "o")
        out.setdefault(key, []).append(x[..., sl].reshape(*x.shape[:-1], mul, ir.dim))
    return {k: torch.cat(v, dim=-2) for k, v in out.items()}


def spin_channels(m: torch.Tensor) -> torch.Tensor:
    """[*, B, 2, N, N] complex -> [*, 4, B, N, N] real: Re/Im of (α+β), Re/Im of (α−β)."""
    s, d = m[..., 0, :, :] + m[..., 1, :, :], m[..., 0, :, :] - m[..., 1, :, :]
    return torch.stack([s.real, s.imag, d.real, d.imag], dim=-4)


def to_pair_irreps(layout: BasisLayout, chans: torch.Tensor) -> list[torch.Tensor]:
    """[*, C, B, N, N] real (PySCF AO order) -> per group [*, P, C, D] block irreps (e3nn order)."""
    mat = layout.to_e3nn @ chans @ layout.to_e3nn.mT
    out = []
    for g in layout.groups:
        blk = layout.gather(mat, g)  # [*, C, P, d1, d2]
        out.append(torch.einsum("...cpij,ijk->...pck", blk, g.basis))
    return out


def from_pair_irreps(layout: BasisLayout, irr: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`to_pair_irreps`: per group [*, P, C, D] -> [*, C, B, N, N]."""
    blocks = [torch.einsum("...pck,ijk->...cpij", y, g.basis) for y, g in zip(irr, layout.groups)]
    mat = layout.scatter(blocks)
    return layout.to_e3nn.mT @ mat @ layout.to_e3nn


class PairEmbedding(nn.Module):
    def __init__(self, cfg: DensityCodecConfig, n_geo_scalars: int):
        super().__init__()
        d = cfg.d_pair
        self.elem, self.l, self.rank = nn.Embedding(cfg.n_elements, d), nn.Embedding(cfg.l_shell_max + 1, d), \
            nn.Embedding(MAX_SHELL_RANK, d)
        self.radial = BesselBasis(cfg.n_radial, cfg.cutoff_bohr)
        self.mlp = nn.Sequential(nn.Linear(2 * d + cfg.n_radial + 1 + 2 * n_geo_scalars, d), nn.SiLU(),
                                 nn.Linear(d, d))

    def forward(self, layout: BasisLayout, pos_flat: torch.Tensor, geo_scalars: torch.Tensor) -> list[torch.Tensor]:
        """-> per group [P, d_pair]. pos_flat [B*A, 3] bohr, geo_scalars [B*A, n0]."""
        if int(layout.shell_l.max()) > self.l.num_embeddings - 1:
            raise ValueError(f"basis has shells with l={int(layout.shell_l.max())}; model config "
                             f"codec.l_shell_max={self.l.num_embeddings - 1}")
        shell = self.elem(layout.shell_z) + self.l(layout.shell_l) + self.rank(layout.shell_rank)  # [S, d]
        out = []
        for g in layout.groups:
            r = (pos_flat[g.atom1] - pos_flat[g.atom2]).norm(dim=-1)
            rad = self.radial(r) * (~g.onsite)[:, None]
            feats = [shell[g.shell1].to(r.dtype), shell[g.shell2].to(r.dtype), rad, g.onsite[:, None].to(r.dtype),
                     geo_scalars[g.atom1], geo_scalars[g.atom2]]
            out.append(self.mlp(torch.cat(feats, dim=-1)))
        return out


class DensityEncoder(nn.Module):
    def __init__(self, cfg: DensityCodecConfig, n_in: int = 8):
        super().__init__()
        self.cfg = cfg
        self.keys = keys_upto(cfg.lmax)
        self.mix = nn.ParameterDict({f"{L}{p}": nn.Parameter(torch.randn(n_in, cfg.mul) * n_in**-0.5)
                                     for L, p in self.keys})
        self.modulate = nn.Linear(cfg.d_pair, cfg.mul)

    @property
    def n_invariants(self) -> int:
        return len(self.keys) * self.cfg.mul

    def forward(self, layout: BasisLayout, pair_irr: list[torch.Tensor], pair_emb: list[torch.Tensor]):
        """pair_irr per group [*, P, C, D] -> atom irreps {(L,p): [*, B*A, mul, 2L+1]}."""
        lead = pair_irr[0].shape[:-3]
        n_atoms = layout.B * layout.A
        ref = pair_irr[0]
        atoms = {k: ref.new_zeros(*lead, n_atoms, self.cfg.mul, 2 * k[0] + 1) for k in self.keys}
        for x, g, e in zip(pair_irr, layout.groups, pair_emb):
            w = self.modulate(e)  # [P, mul]
            for L, p, sl in g.slices():
                if L > self.cfg.lmax:
                    continue
                msg = torch.einsum("...pcm,cq,pq->...pqm", x[..., sl], self.mix[f"{L}{p}"], w)
                acc = atoms[(L, p)]  # [*, B*A, mul, 2L+1] in the input's dtype (bf16 autocast messages: summed in it)
                atoms[(L, p)] = acc.index_add(-3, g.atom1, msg.to(acc.dtype))
        return atoms

    def invariants(self, atoms: dict) -> torch.Tensor:
        """{(L,p): [*, nA, mul, 2L+1]} -> [*, nA, n_invariants]: scalars of 0e, smooth norms of the rest."""
        out = []
        for k in self.keys:
            x = atoms[k]
            out.append(x[..., 0] if k == (0, "e") else torch.sqrt((x * x).sum(-1) + 1e-8) - 1e-4)
        return torch.cat(out, dim=-1)


class BlockDecoder(nn.Module):
    """Per pair and irrep (L, p), a gated linear combination of sources that are linear in Δρ — the ``n_delta``
    Δρ pair-irrep channels and both atoms' density irreps of Δρ (L ≤ ``lmax``) — so the output vanishes with Δρ.
    Weights: static per pair (from the pair embedding) × dynamic gates 1 + tanh(·) of both atoms' latents."""

    def __init__(self, cfg: DensityCodecConfig, d_latent: int, n_out: int, n_delta: int = 4):
        super().__init__()
        self.cfg, self.n_out, self.n_delta = cfg, n_out, n_delta
        self.keys = keys_upto(2 * cfg.l_shell_max)
        self.n_src = {f"{L}{p}": n_delta + (2 * cfg.mul if L <= cfg.lmax else 0) for L, p in self.keys}
        self.static_w = nn.ModuleDict({k: nn.Linear(cfg.d_pair, n * n_out) for k, n in self.n_src.items()})
        self.gate = nn.ModuleDict({k: nn.Linear(d_latent, n) for k, n in self.n_src.items()})
        for lin in self.static_w.values():  # start from a zero output: the head's physics prior alone
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def static_weights(self, layout: BasisLayout, pair_emb: list[torch.Tensor]) -> list[dict]:
        """Per group {key: [P, n_src, n_out]} (static along a trajectory: compute once)."""
        out = []
        for g, e in zip(layout.groups, pair_emb):
            out.append({f"{L}{p}": self.static_w[f"{L}{p}"](e).reshape(e.shape[0], -1, self.n_out)
                        for L, p, _ in g.slices()})
        return out

    def forward(self, layout, delta_irr, atoms, latent, static_w):
        """delta_irr per group [*, P, n_delta, D] (the Δρ pair irreps); atoms {(L,p): [*, nA, mul, 2L+1]} (of Δρ
        alone); latent [*, nA, d_latent] -> [*, n_out, B, N, N] real (AO order)."""
        outs = []
        for x, g, sw in zip(delta_irr, layout.groups, static_w):
            ys = []
            gate_in = latent[..., g.atom1, :] + latent[..., g.atom2, :]  # [*, P, d_latent]
            for L, p, sl in g.slices():
                key = f"{L}{p}"
                src = [x[..., sl]]
                if L <= self.cfg.lmax:
                    src += [atoms[(L, p)][..., g.atom1, :, :], atoms[(L, p)][..., g.atom2, :, :]]
                s = torch.cat(src, dim=-2)  # [*, P, n_src, 2L+1]
                gate = 1 + torch.tanh(self.gate[key](gate_in))  # [*, P, n_src]
                ys.append(torch.einsum("...ps,...psm,psc->...pcm", gate, s, sw[key]))
            outs.append(torch.cat(ys, dim=-1))  # [*, P, n_out, D]
        return from_pair_irreps(layout, outs)


def upgrade_decoder_state(state: dict, decoder: BlockDecoder, n_in: int = 8) -> dict:
    """A state dict written before issue 29, whose decoder also had ρ, geometry and field sources (every one
    multiplied by zero in the forward pass), in today's shapes: the rows of the Δρ channels (``n_in - n_delta`` ..
    ``n_in``) and of both atoms' irreps (next 2·mul) kept, the rest dropped. Today's dicts pass unchanged."""
    out = dict(state)
    for key, n_new in decoder.n_src.items():
        w_key, g_key = f"decoder.static_w.{key}.weight", f"decoder.gate.{key}.weight"
        if w_key not in state or state[g_key].shape[0] == n_new:
            continue
        keep = list(range(n_in - decoder.n_delta, n_in)) + list(range(n_in, n_in + n_new - decoder.n_delta))
        n_old, n_out = state[g_key].shape[0], decoder.n_out
        for part in ("weight", "bias"):
            w = state[f"decoder.static_w.{key}.{part}"]
            out[f"decoder.static_w.{key}.{part}"] = w.reshape(n_old, n_out, *w.shape[1:])[keep].reshape(
                n_new * n_out, *w.shape[1:])
            out[f"decoder.gate.{key}.{part}"] = state[f"decoder.gate.{key}.{part}"][keep]
    return out
