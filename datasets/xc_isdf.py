"""The xc kernel at ρ(0) in factored form — interpolative separable density fitting (ISDF) — for molecules whose
dense pair-coordinate kernel (:mod:`rtml.datasets.xc_kernel`, [N(N+1)/2]² float64: 3.2 GB at N = 200) does not
fit or costs too much to build.

Pair functions of the Löwdin orbitals are interpolated from their values at P = c·N grid points r_μ
(Lu & Ying, J. Comput. Phys. 302, 329 (2015); Hu, Lin & Yang, JCTC 13, 1188 (2017)):

    χ_m(r) χ_n(r) ≈ Σ_μ ζ_μ(r) X_μm X_μn,        X_μm = χ_m(r_μ)

so the semilocal kernel Σ_ab ∫ ∂_a(χ_m χ_n) f_ab ∂_b(χ_k χ_l) becomes Σ_μν X_μm X_μn W_μν X_νk X_νl with
W_μν = Σ_ab ∫ ∂_aζ_μ f_ab ∂_bζ_ν (∂_0 = 1; gradient terms for GGAs), and applying it to a density change is

    δn_μ = (X δP Xᵀ)_μμ,   v = W δn,   δV = Xᵀ diag(v) X          (2·P·N² + P² multiply-adds, no N⁴ object)

Points: the grid is split among atoms (nearest nucleus); on each atom's points a randomised sketch of the pair
functions ((Φ R₁)∘(Φ R₂), weighted by √w) is pivoted by QR (LAPACK ``dgeqp3``) and the first c·n_atom pivots are
kept (n_atom = basis functions on that atom). ζ is the least-squares fit ζ = Z Cᵀ (C Cᵀ)⁻¹ with Z Cᵀ = (Φ Xᵀ)²
and C Cᵀ = (X Xᵀ)² elementwise — never the [grid, N²] pair-function matrix. Set-up: one pass over the grid,
(1 + 4 for GGA) × grid × P² multiply-adds; memory P·N + S²·P².

Exact exchange (hybrids, HF) is applied through the Coulomb Cholesky factor, K[δP] = Σ_Q L_Q δP L_Q (Löwdin;
Q·N³ per application): −½·a·K[δP] closed shell, −a·K[δP_σ] per spin (``XCKernel.hybrid`` = a). Accuracy against
the dense kernel: ``tests/test_xc_isdf.py`` and ``benchmarks/scaling.py``.
"""

from __future__ import annotations

import numpy as np
from pyscf.dft import numint
from scipy.linalg import eigh, lapack, qr
from scipy.spatial import cKDTree

from rtml.datasets.errors import DataError

POINTS_PER_FUNCTION = 12.0  # c: interpolation points per basis function (accuracy vs cost; module docstring)
CHUNK = 4096  # grid points per dense product
SEED = 0  # the sketch's random matrices (the points are a deterministic function of the geometry)


def semilocal_grid(sysm) -> str:
    """The functional's type ('LDA' or 'GGA'; anything else is refused by name), with the engine's grid built."""
    xctype = sysm.mf._numint._xc_type(sysm.cfg.xc)
    if xctype not in ("LDA", "GGA"):
        raise DataError("<xc kernel>", "xc", "an LDA or GGA functional (meta-GGA kernels are not implemented)",
                        sysm.cfg.xc)
    if sysm.mf.grids.coords is None:
        sysm.mf.grids.build(with_non0tab=True)
    return xctype


def select_points(sysm, per_function: float = POINTS_PER_FUNCTION, measure: np.ndarray | None = None) -> np.ndarray:
    """Indices into ``sysm.mf.grids.coords`` of the interpolation points (module docstring), sorted: per atom, the
    first 2·c·n_atom QR pivots of a sketch of the pair functions on its grid points; then globally the first c·N
    pivots of a pivoted Cholesky of the candidates' Gram matrix (C Cᵀ, √w-weighted — the same QR pivoting on all
    candidates at once), which also drops candidates that add nothing."""
    ni, grids, mol = sysm.mf._numint, sysm.mf.grids, sysm.mol
    coords = grids.coords
    weights = np.abs(grids.weights if measure is None else measure)  # [G]
    owner = cKDTree(mol.atom_coords()).query(coords)[1]  # [G] nearest nucleus
    per_atom = np.bincount(np.asarray(sysm.basis.atom_index), minlength=mol.natm)  # functions on each atom
    rng = np.random.default_rng(SEED)
    n = sysm.nbf
    cand = []
    for a in range(mol.natm):
        idx = np.flatnonzero(owner == a)
        p_a = min(int(np.ceil(2 * per_function * per_atom[a])), len(idx))
        if p_a == 0:
            continue
        k = p_a + 16  # oversampled sketch
        phi = ni.eval_ao(mol, coords[idx], deriv=0) @ sysm.x  # [g_a, N] Löwdin orbitals
        r1, r2 = rng.standard_normal((2, n, k))
        z = (phi @ r1) * (phi @ r2) * np.sqrt(weights[idx])[:, None]  # [g_a, k]
        _, piv = qr(z.T, mode="r", pivoting=True)
        cand.append(idx[piv[:p_a]])
    cand = np.concatenate(cand)
    x = (ni.eval_ao(mol, coords[cand], deriv=0) @ sysm.x) * np.sqrt(np.sqrt(weights[cand]))[:, None]
    gram = (x @ x.T) ** 2  # [P_cand, P_cand] √w-weighted C Cᵀ
    m = n * (n + 1) // 2
    _, piv, rank, _ = lapack.dpstrf(gram, tol=1e-13 * gram.diagonal().max(), lower=1)
    keep = min(int(np.ceil(per_function * n)), int(rank), m)
    return np.sort(cand[piv[:keep] - 1])


def isdf_kernel(sysm, rho0: np.ndarray, per_function: float = POINTS_PER_FUNCTION) -> tuple[np.ndarray, np.ndarray]:
    """The semilocal kernel of ``sysm`` (an :class:`rtml.datasets.engine.system.ElectronicSystem`) at ``rho0``
    [S, N, N] (store layout, AO basis), factored: (points X [P, N], weights W [S, P, S, P]) of the module
    docstring (Löwdin basis, float64)."""
    s, n = sysm.n_spin, sysm.nbf
    ni, grids, mol, xc = sysm.mf._numint, sysm.mf.grids, sysm.mol, sysm.cfg.xc
    xctype = semilocal_grid(sysm)
    nv = 1 if xctype == "LDA" else 4
    dm = np.asarray(rho0).real
    fxc = ni.cache_xc_kernel1(mol, grids, xc, dm[0] if s == 1 else (dm[0], dm[1]), spin=s - 1)[2]
    fxc = np.asarray(fxc).reshape(s, nv, s, nv, -1)
    measure = grids.weights * np.abs(np.einsum("sasag->g", fxc[:, :1, :, :1]))  # where the kernel integral weighs
    pts = select_points(sysm, per_function, measure)
    x_pts = ni.eval_ao(mol, grids.coords[pts], deriv=0) @ sysm.x  # [P, N] Löwdin orbitals at the points
    p = len(pts)
    acc = np.zeros((s, p, s, p))  # Σ_g T_aᵀ w f_ab T_b, before (C Cᵀ)⁻¹ on both sides
    start = 0
    blk = numint.BLKSIZE * max(1, CHUNK // numint.BLKSIZE)  # bounded AO blocks: the whole grid is 446 MB at N = 186
    for ao, _mask, weight, _coords in ni.block_loop(mol, grids, n, 0 if nv == 1 else 1, blksize=blk):
        ao = np.asarray(ao).reshape(nv, -1, n)  # [nv, g, N]
        stop = start + ao.shape[1]
        for c in range(0, ao.shape[1], CHUNK):
            a0 = ao[0, c:c + CHUNK] @ sysm.x @ x_pts.T  # [g, P]: Σ_m χ_m(r) X_μm
            t = np.empty((nv, a0.shape[0], p))  # [nv, g, P]: (Φ Xᵀ)² and its gradient
            t[0] = a0 * a0
            for a in range(1, nv):
                t[a] = 2.0 * a0 * (ao[a, c:c + CHUNK] @ sysm.x @ x_pts.T)
            f = fxc[..., start + c:start + c + a0.shape[0]] * weight[c:c + CHUNK]  # [S, nv, S, nv, g]
            for s1 in range(s):
                for s2 in range(s):
                    for a in range(nv):
                        h = np.einsum("bg,bgq->gq", f[s1, a, s2], t)  # [g, P]
                        acc[s1, :, s2, :] += t[a].T @ h
        start = stop
    gram = (x_pts @ x_pts.T) ** 2  # [P, P] C Cᵀ
    w, v = eigh(gram)
    keep = w > w[-1] * 1e-12
    ginv = (v[:, keep] / w[keep]) @ v[:, keep].T  # pseudo-inverse (points beyond the pair functions' rank)
    weights = np.einsum("pq,sqtr,rk->sptk", ginv, acc, ginv, optimize=True)
    return x_pts, weights
