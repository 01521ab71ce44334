"""The local xc term: an adiabatic LDA's whole xc response, evaluated on a coarse real-space grid
(:mod:`rtml.datasets.xc_grid`) — exactly (the physics baseline :class:`rtml.models.baselines.GridXC`) or learned
(:class:`LocalXC`, the surrogate's ``model.local_xc``).

    V_σ(t)_mn = V_xc[ρ(0)]_mn + Σ_g w_g χ_m(g) χ_n(g) δv_σ(g),   n_σ(g) = Σ_mn χ_m(g) ρ_σ,mn χ_n(g)

    exact:    δv = v_xc(n) − v_xc(n0)                       (libxc; an LDA's V_xc[ρ] − V_xc[ρ(0)] on this grid)
    learned:  δv = u_θ(n) − u_θ(n0) + τ·(f_xc(n0) − J_u(n0))·δn,    τ = 1 / (1 + (δn/n0)²)

u_θ(n_α, n_β) is one small network for every molecule (spin-symmetric: u_β(n_α, n_β) = u_α(n_β, n_α)), written
u_σ = n_σ^⅓·(a + MLP(n_σ^⅓, n_σ'^⅓)) — Slater exchange's scaling with a learned correction; untrained, the MLP's
last layer is 0 and a is Slater's constant (``init='slater'``: exchange-only LDA) or 0 (``init='zero'``). Where
the density moved little (|δn| ≪ n0, τ → 1) δv = f_xc(n0)·δn + u_θ's Taylor remainder: the linear response is
the exact kernel's on the grid for any θ (the term is linear xc plus an O(δn²) learned part). Beyond the Taylor
series' radius of convergence (|δn| ≳ n0: density moved into a region that had almost none, where f_xc(n0) ∝
n0^(−2/3) is huge) the expansion means nothing and τ → 0 leaves u_θ(n) − u_θ(n0), which stays finite
(``trust='density'``: τ = n0/(n0 + kernel_density) instead, fixed per point). J_u(n0) by forward-mode
differentiation, once per model call. With u_θ = v_xc the term is exact for LDA at any τ.

Why local and on one grid: the nonlinear part of an adiabatic LDA is a function of the density at a point, the
same in every molecule and geometry; a network of that form cannot learn per-geometry detail that does not
transfer (the block decoder's learned O(Δρ²) term did, and overfitted: issue 24). And the linear term's kernel
diverges where n0 is tiny, so only a nonlinear term on the kernel's own points can cancel it
(:mod:`rtml.datasets.xc_grid`). The grid's G·N² products run in float32 on δρ (rounding relative to δn), u_θ's
network in float32 (rounding ~1e-7 of u ~ 1 Hartree, far below what the remainder carries where it matters).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rtml.datasets.xc_grid import lda_potential
from rtml.datasets.xc_kernel import pairs

FLOOR = 1e-12  # electrons/bohr³: densities are clamped here before the cube root (n ≥ 0 for a valid ρ)
SLATER = -((6.0 / math.pi) ** (1.0 / 3.0))  # Slater exchange: v_x,σ = SLATER · n_σ^⅓ (Hartree, bohr)


@dataclass(kw_only=True)
class LocalXCConfig:
    enabled: bool = False  # replace the kernel term by the local term on a grid (LDA functionals, up to 70 functions)
    hidden: int = 16  # width of u_θ's hidden layers
    layers: int = 2  # hidden layers of u_θ
    # u_θ at initialisation: 'slater' — Slater exchange, a = SLATER (the untrained term is exchange-only LDA's
    # nonlinearity); 'zero' — u = 0 (the untrained model is linear xc on the grid)
    init: Literal["slater", "zero"] = "slater"
    # electrons/bohr³: the exact kernel carries the linear response where n0 ≫ this, u_θ's own where n0 ≪ it
    # (weight n0 / (n0 + this); 0: the exact kernel everywhere)
    kernel_density: float = 1e-3
    # where the exact kernel is trusted: 'convergence' — weight 1/(1 + (δn/n0)²) at each point and time (inside the
    # Taylor series' radius |δn| < n0 the kernel; beyond it u_θ's own); 'density' — n0/(n0 + kernel_density)
    trust: Literal["convergence", "density"] = "convergence"

    def __post_init__(self):
        if self.init not in ("slater", "zero"):
            raise ValueError(f"model.local_xc.init: expected 'slater' or 'zero', got {self.init!r}")
        if self.kernel_density < 0:
            raise ValueError(f"model.local_xc.kernel_density: expected >= 0, got {self.kernel_density}")
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"model.local_xc: expected hidden >= 1 and layers >= 1, got {self.hidden}, {self.layers}")


class LocalXC(nn.Module):
    """u_θ and the learned local term (module docstring)."""

    def __init__(self, cfg: LocalXCConfig):
        super().__init__()
        self.cfg = cfg
        dims = [2] + [cfg.hidden] * cfg.layers + [1]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)
        self.slope = nn.Parameter(torch.full((1,), SLATER if cfg.init == "slater" else 0.0))  # 1-d: DeepSpeed broadcasts bytes

    def potential(self, density: torch.Tensor, closed: bool = False) -> torch.Tensor:
        """u_θ [..., 2, G] of spin densities [..., 2, G] (float64, electrons/bohr³; Hartree). ``closed``: the two
        spins' densities are equal (then u is evaluated once and copied)."""
        t = (density[..., :1, :] if closed else density).clamp_min(FLOOR).pow(1.0 / 3.0)  # [..., 2 (or 1), G]
        h = torch.stack([t, t if closed else t.flip(-2)], dim=-1).to(torch.float32)  # [..., S, G, 2] (own, other)
        for i, layer in enumerate(self.layers):  # float32 whatever the model's dtype (module docstring)
            h = F.linear(h, layer.weight.to(torch.float32), layer.bias.to(torch.float32))
            if i < len(self.layers) - 1:
                h = F.silu(h)
        u = t * (self.slope.to(torch.float64) + h[..., 0].to(torch.float64))
        return u.expand_as(density) if closed else u

    def local(self, ops, density: torch.Tensor, dn: torch.Tensor) -> torch.Tensor:
        """δv [*, B, 2, G] at densities n = n0 + δn [*, B, 2, G]: f_xc(n0)·δn + u_θ's Taylor remainder around n0."""
        d0 = ops.grid_density0
        closed = torch.equal(density[..., 0, :], density[..., 1, :]) and torch.equal(d0[..., 0, :], d0[..., 1, :])
        u0, jac = self._at_reference(ops)  # [B, 2, G], [B, 2, 2, G]
        lin = torch.einsum("bstg,...btg->...bsg", jac, dn)
        u = self.potential(density, closed)
        n0 = d0.sum(-2, keepdim=True)  # [B, 1, G]
        if self.cfg.trust == "convergence":  # the Taylor series of n^⅓ about n0 converges for |δn| < n0 only
            ratio = dn.sum(-2, keepdim=True) / n0.clamp_min(FLOOR)  # [*, B, 1, G]
            trust = 1.0 / (1.0 + ratio.square())
        else:
            trust = n0 / (n0 + self.cfg.kernel_density) if self.cfg.kernel_density > 0 else torch.ones_like(n0)
        return u - u0 + trust * (kernel_local(ops, dn) - lin)

    def _at_reference(self, ops) -> tuple[torch.Tensor, torch.Tensor]:
        """(u(n0) [B, 2, G], J_u(n0) [B, 2, 2, G]) cached on ``ops`` for this module: once per set of operators,
        i.e. per model call's ``prepare`` (a training forward builds new operators, so the cached graph is that
        step's, and every frame and corrector pass of the window shares it)."""
        cache = getattr(ops, "_local_xc_cache", None)
        if cache is None or cache[0] is not self:
            d0 = ops.grid_density0
            cols = [torch.func.jvp(self.potential, (d0,), (torch.zeros_like(d0).index_fill_(-2, torch.tensor([t]), 1.0),))
                    for t in range(2)]
            jac = torch.stack([c[1] for c in cols], dim=-2)  # [B, 2 (σ), 2 (τ), G]
            cache = (self, cols[0][0], jac)
            ops._local_xc_cache = cache
        return cache[1], cache[2]

    def forward(self, ops, rho_o: torch.Tensor) -> torch.Tensor:
        """δV [*, B, 2, N, N] complex128 (Löwdin) of spin-resolved ρ_o [*, B, 2, N, N] on the grid of ``ops``
        (:class:`rtml.models.kohn_sham.KohnShamOperators`)."""
        return grid_term(ops, rho_o, lambda n, dn: self.local(ops, n, dn))


def kernel_local(ops, dn: torch.Tensor) -> torch.Tensor:
    """f_xc(n0)·δn [*, B, 2, G]: the grid's LDA kernel on the density change δn [*, B, 2, G] (the linear part of
    both :func:`exact_local` and the learned term)."""
    return torch.einsum("bstg,...btg->...bsg", ops.grid_kernel0, dn)


def grid_kernel_operators(ops):
    """``ops`` with the grid's LDA kernel as a dense kernel in the pair coordinates of
    :mod:`rtml.datasets.xc_kernel` (spin-resolved; K_στ = Xᵀ diag(w f_στ) X, X[g, (m≤n)] = χ_m(g) χ_n(g), float64):
    ``linear_xc`` of the result is Σ_g w χχ f_xc(n0)·δn — the linear part of :func:`exact_local` and of the learned
    term — as one matrix product, for the Jacobians of :mod:`rtml.models.linear_response` (G·N² products per
    column there)."""
    if ops.grid_orbitals is None or ops.grid_kernel0 is None:
        raise ValueError("the grid kernel needs every molecule's grid with its LDA kernel (KohnShamBatch.grid_*)")
    i0, i1, _, _, _ = pairs(ops.grid_orbitals.shape[-1])
    chi = ops.grid_orbitals.to(torch.float64)  # [B|1, G, N]
    x = chi[..., i0] * chi[..., i1]  # [B|1, G, M]
    f = ops.grid_kernel0 * ops.grid_weights[:, None, None, :]  # [B|1, 2, 2, G]
    blocks = torch.einsum("bgm,bstg,bgk->bsmtk", x, f, x)  # [B|1, 2, M, 2, M]
    kxc = blocks.flatten(3, 4).flatten(1, 2)  # [B|1, 2M, 2M] spin-major, as KohnShamOperators.kxc
    return dataclasses.replace(ops, kxc=kxc, kxc_anti=None, kxc_spins=2, xc_points=None, xc_weights=None,
                               xc_hybrid=None)


def exact_local(ops, density: torch.Tensor, _dn=None) -> torch.Tensor:
    """δv = v_xc(n) − v_xc(n0) [*, B, 2, G] through libxc (the functional of every member; not differentiable)."""
    if ops.grid_functional is None or ops.grid_potential0 is None:
        raise ValueError("the exact local term needs one LDA functional for the whole batch (KohnShamBatch."
                         "grid_functional / grid_potential0)")
    n = density.detach().cpu().numpy()  # [*, B, 2, G]
    v = np.stack([lda_potential(ops.grid_functional, d) for d in n.reshape(-1, *n.shape[-2:])]).reshape(n.shape)
    return torch.from_numpy(v).to(density.device) - ops.grid_potential0


def grid_term(ops, rho_o: torch.Tensor, local) -> torch.Tensor:
    """Σ_g w_g χ_m(g) χ_n(g) δv_σ(g) [*, B, 2, N, N] complex128 with δv = ``local(n, δn)`` [*, B, 2, G] of the
    spin densities n = n0 + δn [*, B, 2, G] at the grid points of ``ops``. The two G·N² products run in float32
    on the deviation δρ = ρ − ρ(0), so their rounding is relative to δn and δV (~1e-7), not to n."""
    if ops.grid_orbitals is None or ops.grid_kernel0 is None:
        raise ValueError("the local xc term needs every molecule's grid with its LDA kernel (KohnShamBatch.grid_*: "
                         "molecules up to rtml.datasets.xc_grid.MAX_BASIS functions with a pure LDA functional)")
    chi = ops.grid_orbitals.to(torch.float32).unsqueeze(-3)  # [B|1, 1, G, N]
    d = (rho_o.real.to(torch.float64) - ops.rho_gs_o.real).to(torch.float32)  # [*, B, 2, N, N]
    closed = torch.equal(d[..., 0, :, :], d[..., 1, :, :])  # closed shell: one spin's products, copied
    if closed:
        d = d[..., :1, :, :]
    dn = ((chi @ d) * chi).sum(-1).to(torch.float64)  # [*, B, 2 (1), G]
    dn = dn.expand(*dn.shape[:-2], 2, dn.shape[-1])
    wv = (local(ops.grid_density0 + dn, dn) * ops.grid_weights.unsqueeze(-2)).to(torch.float32)  # [*, B, 2, G]
    if closed:
        wv = wv[..., :1, :]
    out = (chi.mT @ (wv.unsqueeze(-1) * chi)).to(torch.complex128)  # [*, B, 2 (1), N, N]
    return out.expand(*out.shape[:-3], 2, *out.shape[-2:])
