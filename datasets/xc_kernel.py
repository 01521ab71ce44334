"""The exact linear response of V_xc at the reference density P(0) — the adiabatic xc kernel — for the linear-xc
baseline and the surrogate's linear anchor:

    V_xc[P(0) + δP] ≈ V_xc[P(0)] + K[δP]

held in the **Löwdin basis** (χ = S^-½ φ, the basis the Kohn–Sham head propagates in) and in **pair
coordinates**, which is what makes it affordable for benzene-sized molecules. A Hermitian δP splits into Re δP
(symmetric: M = N(N+1)/2 numbers) and Im δP (antisymmetric: M' = N(N−1)/2 numbers), and K maps each part to the
same part of δV:

* ``sym`` [S, M, S, M]: δ(Re V)_σ,(m≤n) = Σ_σ'q sym[σ, p, σ', q] d_σ',q, with d_(k<l) = δP_kl + δP_lk and
  d_(kk) = δP_kk (Re parts). It is the semilocal xc kernel (LDA/GGA, from PySCF's f_xc on the DFT grid) plus, for
  hybrids and HF, the exact-exchange part −a·K[δP] on real densities.
* ``anti`` [S, M', S, M'] (hybrids and HF; None for pure functionals): δ(Im V)_σ,(m<n) from Im δP_(k<l) — only
  exact exchange sees Im P.

S = 1 for closed shells (the total-density kernel: δV_α = δV_β = K[δP_α + δP_β], exact for the spin-symmetric
perturbations a closed shell keeps), 2 for open shells (α, β). For C6H6/6-31G (N = 66) ``sym`` is 2211² float64
= 39 MB and one application is 4.9 M multiply-adds; the same operator as a dense [2N², 2N²] matrix was 600 MB and
took PySCF ~2 × 10¹² operations to build (one ``nr_rks_fxc`` per unit density). Here the semilocal part is one
dense product per grid chunk, Σ_ab G_aᵀ diag(w f_ab) G_b with G_0 = χ_m χ_n and G_x = ∂_x(χ_m χ_n) on the engine's
own grid (``tests/test_kohn_sham.py`` checks K against central differences of the engine's V_xc, also for B3LYP
with complex δP). Meta-GGAs and range-separated hybrids are refused (not implemented).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rtml.datasets.errors import DataError
from rtml.datasets.xc_isdf import isdf_kernel, semilocal_grid

CHUNK = 4096  # grid points per dense product (memory: (1 or 4) × CHUNK × M float64)


@dataclass
class XCKernel:
    """K of the module docstring (Löwdin basis, float64), dense (``sym``/``anti``, pair coordinates) or factored
    (``points``/``weights``/``hybrid``, :mod:`rtml.datasets.xc_isdf`)."""
    sym: np.ndarray | None = None  # [S, M, S, M] dense
    anti: np.ndarray | None = None  # [S, M', S, M'] (exact exchange), None for pure functionals
    points: np.ndarray | None = None  # [P, N] factored: Löwdin orbitals at the interpolation points
    weights: np.ndarray | None = None  # [S, P, S, P] factored: the kernel between points
    hybrid: float = 0.0  # factored: a of the exact exchange −a·K, applied as Σ_Q L_Q δP L_Q with the Coulomb factor

    @property
    def factored(self) -> bool:
        return self.sym is None

    @property
    def spins(self) -> int:
        return (self.weights if self.factored else self.sym).shape[0]

    @property
    def nbf(self) -> int:
        if self.factored:
            return self.points.shape[1]
        return round((np.sqrt(8 * self.sym.shape[1] + 1) - 1) / 2)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.sym, self.anti, self.points, self.weights) if a is not None)


@lru_cache(maxsize=64)
def pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays of an N×N matrix: (i0, i1) of the M upper-triangle pairs (m ≤ n, row-major), the weights w that
    turn (A + Aᵀ)[i0, i1] into the d coordinates (½ on the diagonal), and (j0, j1) of the M' strict-upper pairs."""
    i0, i1 = np.triu_indices(n)
    j0, j1 = np.triu_indices(n, 1)
    w = np.where(i0 == i1, 0.5, 1.0)
    return i0, i1, w, j0, j1


def pack(a):
    """[..., M] upper triangle (m ≤ n, row-major) of symmetric matrices a [..., N, N] (numpy or torch)."""
    i0, i1, _, _, _ = pairs(a.shape[-1])
    return a[..., i0, i1]


def unpack(v, n: int):
    """The symmetric matrices [..., N, N] of packed upper triangles v [..., M] (numpy or torch)."""
    i0, i1, _, _, _ = pairs(n)
    if isinstance(v, np.ndarray):
        out = np.zeros((*v.shape[:-1], n, n), v.dtype)
    else:
        out = v.new_zeros((*v.shape[:-1], n, n))
    out[..., i0, i1] = v
    out[..., i1, i0] = v
    return out


def sym_coords(a):
    """d coordinates [..., M] of the symmetric part of real matrices a [..., N, N] (numpy or torch)."""
    i0, i1, w, _, _ = pairs(a.shape[-1])
    return (a + a.swapaxes(-1, -2))[..., i0, i1] * (w if isinstance(a, np.ndarray) else a.new_tensor(w))


def apply(kernel: XCKernel, dp: np.ndarray, l_orth: np.ndarray | None = None) -> np.ndarray:
    """K[δP] [S, N, N] complex128 for a Hermitian δP [S, N, N] in the Löwdin basis (reference implementation; the
    model's batched one is :meth:`rtml.models.kohn_sham.KohnShamOperators.linear_xc`). ``l_orth`` [Q, N, N]: the
    Löwdin Coulomb factor, needed by a factored kernel with exact exchange."""
    s, n = kernel.spins, kernel.nbf
    dp = np.asarray(dp)
    if dp.shape != (s, n, n):
        raise ValueError(f"xc kernel: δP of shape {(s, n, n)} expected, got {dp.shape}")
    if kernel.factored:
        x = kernel.points  # [P, N]
        dn = np.einsum("pm,smn,pn->sp", x, dp.real, x)  # [S, P]
        v = np.einsum("sptq,tq->sp", kernel.weights, dn)  # [S, P]
        out = np.einsum("pm,sp,pn->smn", x, v, x).astype(np.complex128)
        if kernel.hybrid:
            if l_orth is None:
                raise ValueError("xc kernel: a factored kernel with exact exchange needs the Löwdin Coulomb factor")
            coef = -0.5 * kernel.hybrid if s == 1 else -kernel.hybrid
            out += coef * np.einsum("qmk,skl,qln->smn", l_orth, dp, l_orth, optimize=True)
        return out
    i0, i1, _, j0, j1 = pairs(n)
    v = np.einsum("spuq,uq->sp", kernel.sym, sym_coords(dp.real))  # [S, M]
    out = np.zeros((s, n, n), np.complex128)
    out[:, i0, i1] = v
    out[:, i1, i0] = v
    if kernel.anti is not None:
        va = np.einsum("spuq,uq->sp", kernel.anti, dp.imag[:, j0, j1])  # [S, M']
        out[:, j0, j1] += 1j * va
        out[:, j1, j0] -= 1j * va
    return out


def compress(k_full: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair-coordinate blocks (sym [M, M], anti [M', M']) of a linear map given densely as V_mn = Σ_kl
    k_full[mn, kl] δP_kl ([N², N²], row-major vec) that maps symmetric to symmetric and antisymmetric to
    antisymmetric matrices."""
    i0, i1, _, j0, j1 = pairs(n)
    k = k_full.reshape(n * n, n * n)
    rows, kl, lk = i0 * n + i1, i0 * n + i1, i1 * n + i0
    sym = 0.5 * (k[np.ix_(rows, kl)] + k[np.ix_(rows, lk)])
    arows, akl, alk = j0 * n + j1, j0 * n + j1, j1 * n + j0
    anti = k[np.ix_(arows, akl)] - k[np.ix_(arows, alk)]
    return sym, anti


def expand(sym: np.ndarray, n: int) -> np.ndarray:
    """The dense [..., N², N²] map of a pure-functional ``sym`` block [..., M, M] (symmetric inputs: the inverse of
    :func:`compress` for maps that see only the symmetric part)."""
    idx = np.zeros((n, n), np.int64)
    i0, i1, _, _, _ = pairs(n)
    idx[i0, i1] = np.arange(len(i0))
    idx[i1, i0] = np.arange(len(i0))
    flat = idx.reshape(-1)
    return sym[..., flat[:, None], flat[None, :]]


KERNEL_METHODS = ("auto", "dense", "isdf")
DENSE_MAX_NBF = 70  # "auto": dense up to this basis size (C6H6/6-31G, N = 66: 39 MB), factored above


def hybrid_coefficient(sysm) -> float:
    """a of the exact exchange −a·K (1 for HF, 0 for pure functionals); range-separated hybrids are refused."""
    if sysm.is_hf:
        return 1.0
    omega, _, hyb = sysm.mf._numint.rsh_and_hybrid_coeff(sysm.cfg.xc, spin=sysm.mol.spin)
    if omega != 0:
        raise DataError("<xc kernel>", "xc", "a pure or global-hybrid functional (range-separated exchange "
                                             "is not implemented)", sysm.cfg.xc)
    return float(hyb)


def xc_kernel(sysm, rho0: np.ndarray, method: str = "auto") -> XCKernel:
    """K at ``rho0`` [S, N, N] (store layout, AO basis) of an :class:`rtml.datasets.engine.system.ElectronicSystem`:
    the module docstring's pair-coordinate blocks in the Löwdin basis S^-½ (``sysm.x``) — ``method='dense'`` — or
    the factored form of :mod:`rtml.datasets.xc_isdf` (``'isdf'``); ``'auto'``: dense for N ≤ DENSE_MAX_NBF."""
    if method not in KERNEL_METHODS:
        raise DataError("<xc kernel>", "kernel method", f"one of {KERNEL_METHODS}", repr(method))
    n, s = sysm.nbf, sysm.n_spin
    hyb = hybrid_coefficient(sysm)
    if method == "isdf" or (method == "auto" and n > DENSE_MAX_NBF):
        if sysm.is_hf:
            points, weights = np.zeros((0, n)), np.zeros((s, 0, s, 0))
        else:
            points, weights = isdf_kernel(sysm, np.asarray(rho0))
        return XCKernel(points=points, weights=weights, hybrid=hyb)
    m = n * (n + 1) // 2
    sym = np.zeros((s, m, s, m))
    anti = None
    if not sysm.is_hf:
        sym += _semilocal(sysm, np.asarray(rho0).real)
    if hyb != 0:
        k_sym, anti = _exchange(sysm, hyb)
        sym += k_sym
    return XCKernel(sym=sym, anti=anti)


def _semilocal(sysm, p0: np.ndarray) -> np.ndarray:
    """Σ_ab G_aᵀ diag(w f_ab) G_b over the engine's grid, [S, M, S, M] (module docstring)."""
    ni, grids, mol, xc = sysm.mf._numint, sysm.mf.grids, sysm.mol, sysm.cfg.xc
    xctype = semilocal_grid(sysm)
    n, s = sysm.nbf, sysm.n_spin
    nv = 1 if xctype == "LDA" else 4  # ρ, (∂x, ∂y, ∂z)ρ
    dm = p0[0] if s == 1 else (p0[0], p0[1])
    fxc = ni.cache_xc_kernel1(mol, grids, xc, dm, spin=s - 1)[2]  # [S·nv, S·nv, ngrid] in libxc's eff layout
    fxc = np.asarray(fxc).reshape(s, nv, s, nv, -1)
    i0, i1, _, _, _ = pairs(n)
    m = len(i0)
    out = np.zeros((s, m, s, m))
    start = 0
    for ao, _mask, weight, _coords in ni.block_loop(mol, grids, n, 0 if nv == 1 else 1):
        ao = np.asarray(ao).reshape(nv, -1, n)  # [nv, g, N] AO values (and gradients)
        stop = start + ao.shape[1]
        for c in range(0, ao.shape[1], CHUNK):
            chi = ao[:, c:c + CHUNK] @ sysm.x  # [nv, g, N] Löwdin orbitals on the grid
            g = np.empty((nv, chi.shape[1], m))  # [nv, g, M] pair functions
            g[0] = chi[0][:, i0] * chi[0][:, i1]
            for a in range(1, nv):
                g[a] = chi[a][:, i0] * chi[0][:, i1] + chi[0][:, i0] * chi[a][:, i1]
            f = fxc[..., start + c:start + c + chi.shape[1]] * weight[c:c + CHUNK]  # [S, nv, S, nv, g]
            for s1 in range(s):
                for t in range(s):
                    for a in range(nv):
                        h = np.einsum("bg,bgq->gq", f[s1, a, t], g)  # [g, M]: Σ_b w f_ab G_b
                        out[s1, :, t, :] += g[a].T @ h
        start = stop
    return out


def _exchange(sysm, hyb: float) -> tuple[np.ndarray, np.ndarray]:
    """The exact-exchange part −a·K[δP] (RKS: −½·a·K[δP_total]; UKS: −a·K[δP_σ] per spin) in pair coordinates of
    the Löwdin basis: (sym [S, M, S, M], anti [S, M', S, M'])."""
    n, s, x = sysm.nbf, sysm.n_spin, sysm.x
    eri = sysm.mol.intor("int2e", aosym="s1").reshape(n, n, n, n)  # (mk|ln), AO
    eri = np.einsum("am,bk,abcd,cl,dn->mkln", x, x, eri, x, x, optimize=True)  # Löwdin
    k_full = eri.transpose(0, 3, 1, 2).reshape(n * n, n * n)  # K[P]_mn = Σ_kl (mk|ln) P_kl
    k_sym, k_anti = compress(k_full, n)
    coef = -0.5 * hyb if s == 1 else -hyb
    sym = np.zeros((s, *k_sym.shape[:1], s, *k_sym.shape[1:]))
    anti = np.zeros((s, *k_anti.shape[:1], s, *k_anti.shape[1:]))
    for t in range(s):  # exchange does not couple spins
        sym[t, :, t, :] = coef * k_sym
        anti[t, :, t, :] = coef * k_anti
    return sym, anti
