"""The exact, cheap parts of a Kohn–Sham matrix for one geometry, computed with PySCF, for the surrogate's
Kohn–Sham head and the physics baselines.

    F_σ(t) = h + J[P(t)] + V_xc,σ[P(t)] + E(t)·r            (AO basis, length gauge, as in rtml.datasets.engine)

* ``h`` (core Hamiltonian) and ``r`` (dipole integrals about the origin) are one-electron integrals of the geometry;
* ``J`` is linear in the total density: ``J[P]_mn = Σ_Q L_Qmn Σ_kl L_Qkl P_kl`` with a three-index factor L.
  ``j_method='cholesky'`` (default) is a pivoted Cholesky factor of the ERIs built column by column from integral
  rows (:mod:`rtml.datasets.eri_cholesky`, residual ≤ 1e-8 Ha; the [N², N²] supermatrix is never formed): the
  head's J then equals the reference engine's to ~1e-9 and needs no auxiliary basis.
  ``j_method='df'`` uses PySCF's density fitting (``pyscf.df``, auxiliary basis ``weigend``): fewer vectors for
  large molecules, at a fitting error of ~1e-5 Ha in J that the learned term then absorbs;
* ``V_xc`` — everything two-electron beyond J (the xc potential; for hybrids and HF also −½·a·K[P], which sees
  Im P) — is what the surrogate learns. :func:`xc_potential` evaluates it exactly (the Fock-supervision target and
  the test oracle); ``vxc0`` is its value at the reference density P(0) (the frozen-xc baseline's and the
  untrained model's V_θ). :func:`rtml.datasets.xc_kernel.xc_kernel` is its exact linear response at P(0) (the
  adiabatic xc kernel plus exact exchange for hybrids; Löwdin basis, pair coordinates): the linear-xc baseline
  V_xc[P(0)] + K[P − P(0)] and the surrogate's linear anchor.

Everything is float64 (complex128 for V_xc) and is computed once per geometry: the window reader caches it per
trajectory (nothing is stored in the Zarr store: the ERI factor of C6H6/6-31G would be ~10× its density
trajectory, and rebuilding all of it takes ~0.1–1 s per geometry). Stores without ``core_hamiltonian`` (NWChem
imports) work: h is recomputed from geometry + basis here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from pyscf import df

from rtml.datasets.engine.system import ElectronicSystem, SystemConfig
from rtml.datasets.eri_cholesky import TOL as CHOLESKY_TOL
from rtml.datasets.eri_cholesky import eri_cholesky
from rtml.datasets.errors import DataError
from rtml.datasets.molecules import Molecule
from rtml.datasets.trajectory import ELEMENTS
from rtml.datasets.xc_grid import MAX_BASIS as GRID_MAX_BASIS
from rtml.datasets.xc_grid import XCGrid, xc_grid
from rtml.datasets.xc_kernel import XCKernel, pack, pairs, sym_coords, unpack, xc_kernel

J_METHODS = ("cholesky", "df")


@dataclass
class KohnShamTerms:
    """Exact Kohn–Sham pieces of one geometry, AO basis, PySCF's AO order; ``S`` = the store's spin layout
    (1: closed-shell total density, 2: α/β)."""
    overlap: np.ndarray  # [N, N] float64
    hcore: np.ndarray  # [N, N] float64, Hartree
    r_ints: np.ndarray  # [3, N, N] float64, bohr (about the origin)
    j_factor: np.ndarray  # [Q, M] float64 packed (m ≤ n, M = N(N+1)/2): J[P] = Σ_Q L_Q tr(L_Q P_total)
    vxc0: np.ndarray  # [S, N, N] complex128, Hartree: V_xc at rho0
    rho0: np.ndarray  # [S, N, N] complex128: the reference density P(0) of vxc0
    xc_kernel: XCKernel | None = None  # K_xc at rho0, Löwdin basis, pair coordinates (rtml.datasets.xc_kernel)
    xc_grid: XCGrid | None = None  # the local xc term's grid (rtml.datasets.xc_grid; molecules up to 70 functions)

    @property
    def nbytes(self) -> int:
        arrays = (self.overlap, self.hcore, self.r_ints, self.j_factor, self.vxc0, self.rho0)
        extra = [x.nbytes for x in (self.xc_kernel, self.xc_grid) if x is not None]
        return sum(a.nbytes for a in arrays) + sum(extra)


def system_from_static(static: dict, source: str = "<memory>") -> ElectronicSystem:
    """A PySCF system for a trajectory's geometry/basis/functional (a store's ``static`` dict or a Trajectory's
    fields), with the engine's grid settings when the trajectory records them."""
    z = np.asarray(static["atomic_numbers"])
    symbols = tuple(ELEMENTS[int(a)] for a in z)
    mol = Molecule(name=str(static.get("molecule", "?")), symbols=symbols,
                   positions=np.asarray(static["positions"], np.float64), charge=int(static["charge"]),
                   multiplicity=int(static["multiplicity"]))
    sys_meta = (static.get("meta") or {}).get("system", {})
    cfg = SystemConfig(basis=static["basis"], xc=static["functional"], grid_level=int(sys_meta.get("grid_level", 3)),
                       grid=sys_meta.get("grid", "pyscf"), ao_cache_mb=0.0)  # set-up passes the grid twice: no AO cache
    sysm = ElectronicSystem(mol, cfg)
    n = len(static["basis_l"])
    if sysm.nbf != n or not np.array_equal(sysm.basis.l, np.asarray(static["basis_l"])):
        raise DataError(source, "basis", f"PySCF's AO order of basis '{cfg.basis}' ({sysm.nbf} functions)",
                        f"{n} functions in another order")
    return sysm


def j_factor(sysm: ElectronicSystem, method: str = "cholesky", tol: float = CHOLESKY_TOL) -> np.ndarray:
    """[Q, M] float64, the symmetric L_Q packed (:func:`rtml.datasets.xc_kernel.pack`), with
    J[P]_mn = Σ_Q L_Qmn Σ_kl L_Qkl P_kl (see module docstring)."""
    n = sysm.nbf
    if method == "cholesky":
        return eri_cholesky(sysm.mol, tol)
    if method == "df":
        cderi = df.incore.cholesky_eri(sysm.mol, auxbasis="weigend", aosym="s1")  # [Q, n²]
        return np.ascontiguousarray(pack(np.asarray(cderi).reshape(-1, n, n)))
    raise DataError("<kohn_sham>", "j_method", f"one of {J_METHODS}", repr(method))


def coulomb(fac: np.ndarray, p_total: np.ndarray) -> np.ndarray:
    """J[P] [N, N] from a packed factor [Q, M] and a total density [N, N] (only Re P contributes)."""
    n = p_total.shape[-1]
    return unpack(fac.T @ (fac @ sym_coords(np.asarray(p_total).real)), n)


def xc_potential(sysm: ElectronicSystem, p: np.ndarray, vhf=None) -> np.ndarray:
    """V_xc[P] = V_eff[P] − J[P] per spin, [S, N, N] complex128, for a density [S, N, N] in the store's layout.
    ``vhf``: the engine's V_eff of this P when already built (saves a Fock build). Without it a pure functional's
    V_xc is the grid integral alone (no J, so no ERIs: PySCF would hold all of them in memory, 1.2 GB at N = 186)."""
    if vhf is None and not sysm.needs_complex:
        mf, dm = sysm.mf, np.asarray(p).real
        if mf.grids.coords is None:
            mf.grids.build(with_non0tab=True)
        if sysm.open_shell:
            vxc = mf._numint.nr_uks(sysm.mol, mf.grids, sysm.cfg.xc, dm)[2]
        else:
            vxc = mf._numint.nr_rks(sysm.mol, mf.grids, sysm.cfg.xc, dm[0])[2]
        return np.asarray(vxc).reshape(sysm.n_spin, sysm.nbf, sysm.nbf).astype(np.complex128)
    if vhf is None:
        vhf = sysm.veff(p)
    veff = np.asarray(vhf).reshape(sysm.n_spin, sysm.nbf, sysm.nbf)
    vj = sysm.coulomb(p.sum(0))
    return (veff - vj[None]).astype(np.complex128)


def kohn_sham_terms(static: dict, rho0: np.ndarray, j_method: str = "cholesky", source: str = "<memory>",
                    sysm: ElectronicSystem | None = None, with_kernel: bool = True,
                    kernel_method: str = "auto", with_grid: bool | None = None) -> KohnShamTerms:
    """The exact terms of a trajectory: ``static`` as returned by ``TrajectoryStore.static`` (or built from a
    Trajectory), ``rho0`` [S, N, N] its reference (ground-state) density. ``kernel_method``: the xc kernel's form
    (:func:`rtml.datasets.xc_kernel.xc_kernel`: dense up to 70 basis functions, factored above). ``with_grid``: add
    the local xc term's grid (:mod:`rtml.datasets.xc_grid`; None: for molecules up to its ``MAX_BASIS`` functions)."""
    sysm = sysm or system_from_static(static, source)
    rho0 = np.asarray(rho0, np.complex128)
    if rho0.shape != (sysm.n_spin, sysm.nbf, sysm.nbf):
        raise DataError(source, "density[0]", f"shape {(sysm.n_spin, sysm.nbf, sysm.nbf)}", str(rho0.shape))
    hcore = static.get("core_hamiltonian")
    hcore = sysm.hcore if hcore is None else np.asarray(hcore, np.float64)
    vxc0 = xc_potential(sysm, rho0)
    kernel = xc_kernel(sysm, rho0, kernel_method) if with_kernel else None
    grid = xc_grid(sysm, rho0) if (sysm.nbf <= GRID_MAX_BASIS if with_grid is None else with_grid) else None
    return KohnShamTerms(overlap=sysm.overlap, hcore=hcore, r_ints=sysm.r_ints, j_factor=j_factor(sysm, j_method),
                         vxc0=vxc0, rho0=rho0, xc_kernel=kernel, xc_grid=grid)


def static_of(traj) -> dict:
    """The ``static`` dict of an in-memory :class:`~rtml.datasets.trajectory.Trajectory`."""
    return {"molecule": traj.molecule, "atomic_numbers": traj.atomic_numbers, "positions": traj.positions,
            "charge": traj.charge, "multiplicity": traj.multiplicity, "basis": traj.basis_name,
            "functional": traj.functional, "basis_l": traj.basis.l, "core_hamiltonian": traj.core_hamiltonian,
            "meta": traj.meta}


@dataclass(kw_only=True)
class KohnShamBatch:
    """AO-basis exact terms of a batch (padded): the Kohn–Sham pieces of :class:`rtml.models.inputs.MoleculeBatch`."""
    overlap: torch.Tensor  # [B, N, N] float64 (identity on padding): the Löwdin transform in full precision
    hcore: torch.Tensor  # [B, N, N] float64, Hartree
    r_ints: torch.Tensor  # [B, 3, N, N] float64, bohr
    # the two large operators are held once when every member is the same geometry (``from_terms`` with one terms
    # object repeated: many fields on one molecule), leading dim 1, broadcast over the batch
    j_factor: torch.Tensor  # [B or 1, Q, M] float64 packed in the padded basis's pairs (zero-padded in Q)
    vxc0: torch.Tensor  # [B, 2, N, N] complex128, V_xc at the reference density
    rho_gs: torch.Tensor  # [B, 2, N, N] complex128, the reference (ground-state) density, spin-resolved
    # K_xc at ρ(0) (rtml.datasets.xc_kernel; padded N, pair coordinates of the padded basis; S = 2 if any member is
    # open-shell, closed shells then fill all four spin blocks), None if any term lacks one
    xc_kernel: torch.Tensor | None = None  # [B or 1, S, M, S, M] float64, M = N(N+1)/2: Re δP -> Re δV
    xc_kernel_anti: torch.Tensor | None = None  # [B or 1, S, M', S, M'] float64, M' = N(N-1)/2: Im δP -> Im δV
    # the factored (ISDF) kernel instead (rtml.datasets.xc_isdf; every member factored, zero-padded in P)
    xc_points: torch.Tensor | None = None  # [B or 1, P, N] float64, Löwdin orbitals at the interpolation points
    xc_weights: torch.Tensor | None = None  # [B or 1, S, P, S, P] float64
    xc_hybrid: torch.Tensor | None = None  # [B or 1] float64, a of the exact exchange −a·K (through j_factor)
    # the local xc term's grid (rtml.datasets.xc_grid; every member has one, zero-padded in G), None otherwise
    grid_orbitals: torch.Tensor | None = None  # [B or 1, G, N] float64, Löwdin orbitals at the grid points
    grid_weights: torch.Tensor | None = None  # [B or 1, G] float64 (0 on padding)
    grid_density0: torch.Tensor | None = None  # [B or 1, 2, G] float64, ρ(0)'s spin densities there
    grid_potential0: torch.Tensor | None = None  # [B or 1, 2, G] float64, v_xc(n0) (LDA functionals)
    grid_kernel0: torch.Tensor | None = None  # [B or 1, 2, 2, G] float64, f_xc(n0) (LDA functionals)
    grid_functional: str | None = None  # the members' (one) functional, for the exact local term

    @property
    def has_xc_kernel(self) -> bool:
        return self.xc_kernel is not None or self.xc_points is not None

    def to(self, device=None) -> KohnShamBatch:
        return KohnShamBatch(**{f.name: v.to(device=device) if torch.is_tensor(v) else v
                                for f in fields(self) for v in [getattr(self, f.name)]})

    @classmethod
    def from_terms(cls, terms: list, nbf_pad: int | None = None) -> KohnShamBatch:
        """Pad a list of :class:`rtml.datasets.kohn_sham.KohnShamTerms` (store spin layout) into a batch."""
        B = len(terms)
        big = terms[:1] if all(t is terms[0] for t in terms) else terms  # one geometry: large operators once
        N = nbf_pad or max(t.hcore.shape[-1] for t in terms)
        Q = max(t.j_factor.shape[0] for t in terms)
        fac0 = np.asarray(big[0].j_factor, np.float64)
        shared = len(big) == 1 and fac0.shape == (Q, N * (N + 1) // 2)  # one unpadded geometry: no copy of L
        out = cls(overlap=torch.eye(N, dtype=torch.float64).repeat(B, 1, 1),
                  hcore=torch.zeros(B, N, N, dtype=torch.float64), r_ints=torch.zeros(B, 3, N, N, dtype=torch.float64),
                  j_factor=torch.from_numpy(fac0)[None] if shared else
                  torch.zeros(len(big), Q, N * (N + 1) // 2, dtype=torch.float64),
                  vxc0=torch.zeros(B, 2, N, N, dtype=torch.complex128),
                  rho_gs=torch.zeros(B, 2, N, N, dtype=torch.complex128))
        for b, t in enumerate(terms):
            n = t.hcore.shape[-1]
            out.overlap[b, :n, :n] = torch.from_numpy(np.asarray(t.overlap, np.float64))
            out.hcore[b, :n, :n] = torch.from_numpy(np.asarray(t.hcore, np.float64))
            out.r_ints[b, :, :n, :n] = torch.from_numpy(np.asarray(t.r_ints, np.float64))
            out.vxc0[b, :, :n, :n] = potential_spin_resolved(t.vxc0)
            rho = torch.from_numpy(np.asarray(t.rho0, np.complex128))
            out.rho_gs[b, :, :n, :n] = torch.cat([0.5 * rho, 0.5 * rho]) if rho.shape[0] == 1 else rho
        for b, t in enumerate(big if not shared else []):
            out.j_factor[b, :t.j_factor.shape[0], _padded_pairs(t.hcore.shape[-1], N)] = torch.from_numpy(
                np.asarray(t.j_factor, np.float64))
        if all(t.xc_kernel is not None for t in terms):
            kinds = {t.xc_kernel.factored for t in big}
            if len(kinds) > 1:
                raise ValueError("KohnShamBatch: every member's xc kernel must be dense or every one factored "
                                 "(rtml.datasets.xc_kernel.xc_kernel(method=...)); this batch mixes them")
            if kinds == {True}:
                out.xc_points, out.xc_weights, out.xc_hybrid = _pad_factored([t.xc_kernel for t in big], N)
            else:
                out.xc_kernel = _pad_kernels([t.xc_kernel.sym for t in big], N, strict=False)
                if any(t.xc_kernel.anti is not None for t in big):
                    out.xc_kernel_anti = _pad_kernels([t.xc_kernel.anti for t in big], N, strict=True)
        if all(t.xc_grid is not None for t in terms):
            _pad_grids(out, [t.xc_grid for t in big], N)
        return out


def _pad_grids(out: KohnShamBatch, grids: list, n_pad: int) -> None:
    """Local-term grids into ``out.grid_*`` (orbitals [B, G, N], weights [B, G], densities and potentials
    [B, 2, G], kernels [B, 2, 2, G]), zero-padded in G and N; potential and kernel only when every grid has them,
    the functional only when it is the same for all."""
    g_max = max(g.size for g in grids)
    b = len(grids)
    out.grid_orbitals = torch.zeros(b, g_max, n_pad, dtype=torch.float64)
    out.grid_weights = torch.zeros(b, g_max, dtype=torch.float64)
    out.grid_density0 = torch.zeros(b, 2, g_max, dtype=torch.float64)
    lda = all(g.kernel0 is not None for g in grids)
    if lda:
        out.grid_potential0 = torch.zeros(b, 2, g_max, dtype=torch.float64)
        out.grid_kernel0 = torch.zeros(b, 2, 2, g_max, dtype=torch.float64)
    names = {g.functional for g in grids}
    out.grid_functional = names.pop() if len(names) == 1 else None
    for i, g in enumerate(grids):
        out.grid_orbitals[i, :g.size, :g.orbitals.shape[1]] = torch.from_numpy(g.orbitals)
        out.grid_weights[i, :g.size] = torch.from_numpy(g.weights)
        out.grid_density0[i, :, :g.size] = torch.from_numpy(g.density0)
        if lda:
            out.grid_potential0[i, :, :g.size] = torch.from_numpy(g.potential0)
            out.grid_kernel0[i, :, :, :g.size] = torch.from_numpy(g.kernel0)


def _padded_pairs(n: int, n_pad: int) -> torch.Tensor:
    """Positions of an N-function basis's packed pairs among those of the padded basis (same leading functions)."""
    i0, i1, _, _, _ = pairs(n)
    return torch.from_numpy(i0 * n_pad - i0 * (i0 - 1) // 2 + (i1 - i0))


def _pad_factored(kernels: list, n_pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Factored kernels -> (points [B, P, N], weights [B, S, P, S, P], hybrid [B]) zero-padded in P and N;
    closed shells in an open-shell batch fill all four spin blocks (the total-density kernel)."""
    spins = max(k.spins for k in kernels)
    p_max = max(k.points.shape[0] for k in kernels)
    pts = torch.zeros(len(kernels), p_max, n_pad, dtype=torch.float64)
    w = torch.zeros(len(kernels), spins, p_max, spins, p_max, dtype=torch.float64)
    for b, k in enumerate(kernels):
        p, n = k.points.shape
        pts[b, :p, :n] = torch.from_numpy(k.points)
        kw = torch.from_numpy(k.weights)
        for s in range(spins):
            for t in range(spins):
                w[b, s, :p, t, :p] = kw[min(s, k.spins - 1), :, min(t, k.spins - 1), :]
    return pts, w, torch.tensor([k.hybrid for k in kernels], dtype=torch.float64)


def _pad_kernels(blocks: list, n_pad: int, strict: bool) -> torch.Tensor:
    """Pair-coordinate kernel blocks [S_b, m_b, S_b, m_b] (None: zero) -> [B, S, M, S, M] in the pair coordinates
    of the padded basis (``strict``: the M' strict-upper pairs)."""
    spins = max(k.shape[0] for k in blocks if k is not None)
    idx = np.zeros((n_pad, n_pad), np.int64)
    i0, i1, _, j0, j1 = pairs(n_pad)
    r, c = (j0, j1) if strict else (i0, i1)
    idx[r, c] = np.arange(len(r))
    out = torch.zeros(len(blocks), spins, len(r), spins, len(r), dtype=torch.float64)
    for b, k in enumerate(blocks):
        if k is None:
            continue
        n = round((np.sqrt(8 * k.shape[1] + 1) + (1 if strict else -1)) / 2)
        a0, a1, _, s0, s1 = pairs(n)
        pos = torch.from_numpy(idx[(s0, s1) if strict else (a0, a1)])  # this molecule's pairs in the padded basis
        kt = torch.from_numpy(k)
        for s in range(spins):
            for t in range(spins):
                blk = kt[min(s, k.shape[0] - 1), :, min(t, k.shape[0] - 1), :]  # closed shell: the same block 4×
                out[b, s, :, t, :][pos[:, None], pos[None, :]] = blk
    return out


def potential_spin_resolved(v) -> torch.Tensor:
    """[..., S, n, n] potential (S=1: the closed-shell potential, the same for both spins) -> [..., 2, n, n]
    complex128. Unlike a density (split P/2 + P/2), a potential is copied to both spins."""
    v = torch.as_tensor(np.asarray(v)) if not torch.is_tensor(v) else v
    v = v.to(torch.complex128)
    return torch.cat([v, v], dim=-3) if v.shape[-3] == 1 else v
