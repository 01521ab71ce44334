"""The Kohn–Sham head's exact physics: H_σ = h + J[ρ] + E(t)·r + V_σ, propagated with the engine's 2nd-order
Magnus step in the Löwdin basis.

Only V (the xc potential, learned by the network as V_θ) is approximate; h, r and the Coulomb factor L come from
PySCF per geometry (:mod:`rtml.datasets.kohn_sham`) and are used in float64, the state in complex128, whatever the
network's dtype. Shapes: densities ``[*, B, 2, N, N]`` spin-resolved (closed shell: α = β = P/2), the batch's
padded basis (padding rows/columns are zero in every operator, so U = 1 there).

Midpoint scheme of one step t -> t+Δt (``iterations`` = n):

    H_mid = h + ½(J[ρ(t)] + J[ρ̃(t+Δt)]) + V_mid + E_mid·r,     ρ(t+Δt) = U ρ(t) U†, U = exp(-i Δt H_mid)

with E_mid = ½(E(t) + E(t+Δt)) (the engine's trapezoidal field) and ρ̃(t+Δt) first predicted with J at the
linearly extrapolated midpoint density ρ(t) + ½(ρ(t) − ρ(t−Δt)), then corrected n times. n = 1 (default; two
matrix exponentials a step) is the head's cheap scheme; iterating to convergence with V_mid = ½(V[ρ(t)] +
V[ρ̃(t+Δt)]) is the engine's self-consistent midpoint (:func:`magnus_step` with a callable ``v``), which the oracle
test uses. A network V_θ is one tensor per step (its estimate of the midpoint xc potential).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from rtml.datasets.kohn_sham import KohnShamBatch
from rtml.datasets.xc_kernel import pack, pairs, sym_coords, unpack
from rtml.models.physics import hermitize


@dataclass
class KohnShamOperators:
    """Löwdin-basis operators of a batch (float64 / complex128), from :meth:`from_batch`."""
    h_o: torch.Tensor  # [B, N, N] complex128
    r_o: torch.Tensor  # [B, 3, N, N] complex128
    l_o: torch.Tensor  # [B or 1, Q, M] float64, S^-½ L S^-½ packed (m ≤ n; 1: one geometry for the whole batch)
    vxc0_o: torch.Tensor  # [B, 2, N, N] complex128
    rho_gs_o: torch.Tensor  # [B, 2, N, N] complex128
    x: torch.Tensor  # [B, N, N] float64, S^-½
    x_inv: torch.Tensor  # [B, N, N] float64, S^½
    kxc: torch.Tensor | None = None  # [B or 1, S·M, S·M] float64: xc kernel at ρ(0) (Löwdin, pair coordinates)
    kxc_anti: torch.Tensor | None = None  # [B or 1, S·M', S·M'] float64: its exact-exchange part on Im ρ (hybrids)
    kxc_spins: int = 1  # S: 1 = total-density kernel (closed shells), 2 = spin-resolved
    xc_points: torch.Tensor | None = None  # [B or 1, P, N] float64: the factored kernel's points (rtml.datasets.xc_isdf)
    xc_weights: torch.Tensor | None = None  # [B or 1, S·P, S·P] float64
    xc_hybrid: torch.Tensor | None = None  # [B or 1] float64: exact exchange −a·K through l_o
    grid_orbitals: torch.Tensor | None = None  # [B or 1, G, N] float64: the local xc term's grid (rtml.datasets.xc_grid)
    grid_weights: torch.Tensor | None = None  # [B or 1, G] float64
    grid_density0: torch.Tensor | None = None  # [B or 1, 2, G] float64
    grid_potential0: torch.Tensor | None = None  # [B or 1, 2, G] float64: v_xc(n0) (LDA)
    grid_kernel0: torch.Tensor | None = None  # [B or 1, 2, 2, G] float64: f_xc(n0) (LDA)
    grid_functional: str | None = None

    @property
    def has_kernel(self) -> bool:
        """Whether :meth:`linear_xc` can run (a dense or a factored xc kernel at ρ(0))."""
        return self.kxc is not None or self.xc_points is not None

    @classmethod
    def from_batch(cls, ks: KohnShamBatch) -> KohnShamOperators:
        """Löwdin transforms from the float64 overlap the batch carries (not the network-dtype one)."""
        with torch.no_grad():
            s = ks.overlap
            w, v = torch.linalg.eigh(s)
            x = (v * w.rsqrt()[..., None, :]) @ v.mT  # [B, N, N]
            x_inv = (v * w.sqrt()[..., None, :]) @ v.mT
            xc = x.to(torch.complex128)
            xi = x_inv.to(torch.complex128)
            kxc = None if ks.xc_kernel is None else ks.xc_kernel.flatten(3, 4).flatten(1, 2)  # already Löwdin
            kxc_anti = None if ks.xc_kernel_anti is None else ks.xc_kernel_anti.flatten(3, 4).flatten(1, 2)
            spins = ks.xc_kernel.shape[1] if ks.xc_kernel is not None else \
                ks.xc_weights.shape[1] if ks.xc_weights is not None else 1
            fac = {} if ks.xc_points is None else {"xc_points": ks.xc_points, "xc_hybrid": ks.xc_hybrid,
                                                    "xc_weights": ks.xc_weights.flatten(3, 4).flatten(1, 2)}
            grid = {k: getattr(ks, k) for k in ("grid_orbitals", "grid_weights", "grid_density0",
                                                "grid_potential0", "grid_kernel0", "grid_functional")}
            return cls(kxc=kxc, kxc_anti=kxc_anti, kxc_spins=spins, **fac, **grid, h_o=(x @ ks.hcore @ x).to(torch.complex128), r_o=(x[:, None] @ ks.r_ints @ x[:, None]).to(
                torch.complex128), l_o=_orth_factor(ks.j_factor, x[:len(ks.j_factor)]),
                vxc0_o=xc[:, None] @ ks.vxc0 @ xc[:, None], rho_gs_o=xi[:, None] @ ks.rho_gs @ xi[:, None],
                x=x, x_inv=x_inv)

    def select(self, i: int) -> KohnShamOperators:
        """The operators of member ``i`` alone (batch 1; operators held once for the batch are shared)."""
        return KohnShamOperators(**{f.name: v[i:i + 1] if torch.is_tensor(v) and v.shape[0] > 1 else v
                                    for f in fields(self) for v in [getattr(self, f.name)]})

    def coulomb(self, rho_o: torch.Tensor) -> torch.Tensor:
        """J[ρ] [*, B, 1, N, N] complex128 (Löwdin) of spin-resolved ρ_o [*, B, 2, N, N] (total density), through
        the packed factor: tr(L_Q ρ) = L_Q · d(ρ) with the pair coordinates d of :func:`sym_coords`."""
        n = rho_o.shape[-1]
        d = sym_coords(rho_o.real.sum(-3).to(torch.float64))  # [*, B, M]
        j = _apply(self.l_o.mT, _apply(self.l_o, d))  # [*, B, M]
        return unpack(j, n).to(torch.complex128).unsqueeze(-3)

    def linear_xc(self, rho_o: torch.Tensor) -> torch.Tensor:
        """K[ρ − ρ(0)] [*, B, 2, N, N] complex128 (Löwdin): the xc kernel at ρ(0) applied to the deviation, in the
        pair coordinates of :mod:`rtml.datasets.xc_kernel` (Re part; Im part through exact exchange for hybrids)."""
        if not self.has_kernel:
            raise ValueError("the linear-xc term needs the xc kernel (KohnShamBatch.xc_kernel or xc_points)")
        n, s = rho_o.shape[-1], self.kxc_spins
        if self.kxc is None:
            return self._factored_xc(rho_o)
        i0, i1, _, j0, j1 = pairs(n)
        d = self._deviation(rho_o)  # [*, B, S, N, N]
        out = torch.zeros(d.shape, dtype=torch.float64, device=d.device)
        v = _apply(self.kxc, sym_coords(d.real).flatten(-2)).unflatten(-1, (s, len(i0)))  # [*, B, S, M]
        out[..., i0, i1] = v
        out[..., i1, i0] = v
        out = out.to(torch.complex128)
        if self.kxc_anti is not None:
            va = _apply(self.kxc_anti, d.imag[..., j0, j1].flatten(-2)).unflatten(-1, (s, len(j0)))  # [*, B, S, M']
            im = torch.zeros(d.shape, dtype=torch.float64, device=d.device)
            im[..., j0, j1] = va
            im[..., j1, j0] = -va
            out = out + 1j * im
        return out if s == 2 else out.expand(*out.shape[:-3], 2, n, n)

    def _deviation(self, rho_o: torch.Tensor) -> torch.Tensor:
        """ρ − ρ(0) [*, B, S, N, N] complex128: spin-resolved (S = 2) or the total density (S = 1)."""
        d = rho_o.to(torch.complex128) - self.rho_gs_o  # [*, B, 2, N, N]
        return d.sum(-3, keepdim=True) if self.kxc_spins == 1 else d

    def _factored_xc(self, rho_o: torch.Tensor) -> torch.Tensor:
        """K[ρ − ρ(0)] through the factored kernel (:mod:`rtml.datasets.xc_isdf`): δn = diag(X δP Xᵀ), v = W δn,
        δV = Xᵀ diag(v) X, plus −a·K[δP] (−½a on the total density) through the Coulomb factor for hybrids."""
        n, s = rho_o.shape[-1], self.kxc_spins
        d = self._deviation(rho_o)  # [*, B, S, N, N]
        # the two P·N² products in float32: their rounding (~1e-7 of δV_xc) is far below the fit's ~1e-3
        x = self.xc_points.unsqueeze(-3).to(torch.float32)  # [B or 1, 1, P, N]
        dn = ((x @ d.real.to(torch.float32)) * x).sum(-1).to(torch.float64)  # [*, B, S, P]
        v = _apply(self.xc_weights, dn.flatten(-2)).unflatten(-1, (s, -1))  # [*, B, S, P] float64
        out = ((x * v.to(torch.float32).unsqueeze(-1)).mT @ x).to(torch.complex128)  # [*, B, S, N, N]
        if bool((self.xc_hybrid != 0).any()):
            coef = (-0.5 if s == 1 else -1.0) * self.xc_hybrid  # [B or 1]
            out = out + coef[:, None, None, None].to(torch.complex128) * self._exchange(d)
        return out if s == 2 else out.expand(*out.shape[:-3], 2, n, n)

    def _exchange(self, d: torch.Tensor, chunk: int = 128) -> torch.Tensor:
        """K[d] = Σ_Q L_Q d L_Q [*, B, S, N, N] complex128 (Löwdin Coulomb factor l_o; Q in chunks)."""
        out = torch.zeros_like(d)
        for q in range(0, self.l_o.shape[1], chunk):
            lq = unpack(self.l_o[:, q:q + chunk], d.shape[-1]).unsqueeze(-4).to(torch.complex128)  # [B|1, 1, q, N, N]
            out = out + (lq @ d.unsqueeze(-3) @ lq).sum(-3)
        return out

    def field_term(self, e: torch.Tensor) -> torch.Tensor:
        """E·r [*, B, 1, N, N] complex128 for fields e [*, B, 3] (a.u.)."""
        return torch.einsum("...bx,bxij->...bij", e.to(torch.float64).to(torch.complex128), self.r_o).unsqueeze(-3)

    def to_orth_potential(self, v_ao: torch.Tensor) -> torch.Tensor:
        """AO potential [*, B, 2, N, N] -> Löwdin S^-½ V S^-½."""
        x = self.x.to(torch.complex128)[:, None]
        return x @ v_ao.to(torch.complex128) @ x


def _orth_factor(fac: torch.Tensor, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Packed AO factor [B or 1, Q, M] -> packed S^-½ L_Q S^-½ [B or 1, Q, M], Q in chunks (never [Q, N, N])."""
    n = x.shape[-1]
    out = torch.empty_like(fac)
    for q in range(0, fac.shape[1], chunk):
        out[:, q:q + chunk] = pack(x[:, None] @ unpack(fac[:, q:q + chunk], n) @ x[:, None])
    return out


def _apply(op: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """op [B or 1, m, k] applied to vectors v [*, B, k] -> [*, B, m]. One operator for the whole batch is one matrix
    product over every vector (read once), not B matrix-vector products over copies."""
    if op.shape[0] == 1:
        return v @ op[0].mT
    return (op @ v.unsqueeze(-1)).squeeze(-1)


def magnus_step(ops: KohnShamOperators, rho_o: torch.Tensor, v, e_mid: torch.Tensor, dt: float,
                rho_prev_o: torch.Tensor | None = None, iterations: int = 1, tol: float = 0.0,
                return_potential: bool = False, batched_terms: bool = False):
    """One Magnus-2 step of ρ_o [*, B, 2, N, N] complex128 (module docstring). ``v``: V_mid [*, B, 2, N, N]
    (Löwdin, Hartree), or a callable ρ_o -> V[ρ_o] (then V_mid = ½(V[ρ(t)] + V[ρ̃(t+Δt)])), or a pair
    (V_const, callable) for V_const + that average (e.g. a learned potential plus a weighted linear-xc term);
    ``e_mid`` [*, B, 3]. ``iterations`` corrector passes; with ``tol`` > 0 the passes stop early once
    max|ΔH_mid| <= tol. ``return_potential``: also return the V_mid used (the xc part of H_mid). ``batched_terms``:
    the callable takes extra leading dimensions (then V[ρ(t)] and V at the extrapolated midpoint come from one call
    on both stacked; a callable written for ρ_o's own shape is called once per density)."""
    const, fn = v if isinstance(v, tuple) else (None, v) if callable(v) else (v, None)

    def parts(r):  # (J[r], V_fn[r])
        return ops.coulomb(r), (fn(r) if fn is not None else 0.0)

    static = ops.h_o.unsqueeze(-3) + ops.field_term(e_mid)  # [*, B, 1, N, N]
    if const is not None:
        static = static + const
    if rho_prev_o is None:
        j_now, f_now = parts(rho_o)
        j_mid, f_mid = j_now, f_now
    else:  # J of ρ(t) and of the extrapolated midpoint in one pass over the Coulomb factor
        extrap = rho_o + 0.5 * (rho_o - rho_prev_o)
        j_now, j_mid = ops.coulomb(torch.stack([rho_o, extrap])).unbind(0)
        # without corrector passes V[ρ(t)] is not needed at all
        f_now, f_mid = 0.0, 0.0
        if fn is not None and iterations > 0 and batched_terms:
            f_now, f_mid = fn(torch.stack([rho_o, extrap])).unbind(0)
        elif fn is not None:
            f_now, f_mid = (fn(rho_o) if iterations > 0 else 0.0), fn(extrap)
    h_mid = static + j_mid + f_mid
    for _ in range(iterations):
        j_new, f_new = parts(_propagate(rho_o, h_mid, dt))
        j_mid, f_mid = 0.5 * (j_now + j_new), 0.5 * (f_now + f_new)
        h_new = static + j_mid + f_mid
        change = float((h_new - h_mid).abs().max()) if tol > 0 else None
        h_mid = h_new
        if change is not None and change <= tol:
            break
    out = _propagate(rho_o, h_mid, dt)
    if return_potential:
        return out, (0.0 if const is None else const) + f_mid
    return out


def _propagate(rho_o: torch.Tensor, h_o: torch.Tensor, dt: float) -> torch.Tensor:
    """U ρ U†, U = exp(-i Δt H) (matrix_exp: differentiable, no eigendecomposition)."""
    u = torch.linalg.matrix_exp(((-1j * dt) * hermitize(h_o)).contiguous())
    return hermitize(u @ rho_o @ u.mH)
