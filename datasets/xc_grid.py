"""A real-space grid for local xc terms: the Löwdin orbitals, quadrature weights, ground-state spin densities and
the functional's potential and kernel there, at the points of a coarse PySCF DFT grid.

An adiabatic LDA's potential is local: V_xc[ρ]_mn = V_xc[ρ(0)]_mn + ∫ χ_m χ_n (v_xc(n) − v_xc(n0)) dr with
n(r) = Σ_mn χ_m(r) P_mn χ_n(r), and the linear-xc kernel term is its first order, ∫ χ_m χ_n f_xc(n0) δn. A grid of
G points makes the integral Σ_g w_g χ_m(g) χ_n(g) (...)_g: 2·G·N² work a call, G·N memory.

Why the tails matter: f_xc(n0) ∝ n0^(−2/3) diverges where the ground-state density is tiny, so the linear term
is enormous wherever a strong field moves density into such regions, and only the nonlinear term *on the same
grid points* cancels it (the exact v_xc(n) − v_xc(n0) stays finite). Pruning those points, or adding a nonlinear
correction evaluated on another grid than the kernel's, leaves the error in (LiH, resonant 0.06 a.u. pulse, 400
steps, dipole nRMSE against the engine: linear xc 0.58; the exact LDA remainder on a level-1 grid added to the
engine-grid kernel 0.23; the whole local term on one level-1 grid 9e-6; docs/heldout_and_regimes.md). So the grid
here keeps every point where n0 > :data:`DENSITY_FLOOR` and carries the kernel f_xc(n0) itself: the local term's
linear response is this grid's, consistently. Everything is float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyscf import dft

from rtml.datasets.errors import DataError

LEVEL = 1  # PySCF grid level of the local-term grid (the engine's is 3; accuracy vs level in docs/heldout_and_regimes.md)
DENSITY_FLOOR = 1e-10  # electrons/bohr³: grid points with a smaller total n0 are dropped
MAX_BASIS = 70  # molecules up to this many functions carry a grid by default (G·N memory, 2·G·N² work a call)


@dataclass
class XCGrid:
    """One geometry's local-term grid (module docstring)."""
    orbitals: np.ndarray  # [G, N] float64, Löwdin orbitals χ S^-½ at the kept points
    weights: np.ndarray  # [G] float64, quadrature weights (bohr³)
    density0: np.ndarray  # [2, G] float64, ρ(0)'s α and β densities there (closed shell: n0/2 each)
    functional: str  # the functional (PySCF/libxc name) the potential and kernel are of
    potential0: np.ndarray | None = None  # [2, G] float64, v_xc,σ(n0) (Hartree); None: not an LDA functional
    kernel0: np.ndarray | None = None  # [2, 2, G] float64, f_xc,στ(n0) (Hartree·bohr³); None likewise

    @property
    def nbytes(self) -> int:
        extra = [a.nbytes for a in (self.potential0, self.kernel0) if a is not None]
        return self.orbitals.nbytes + self.weights.nbytes + self.density0.nbytes + sum(extra)

    @property
    def size(self) -> int:
        return len(self.weights)


def xc_grid(sysm, rho0: np.ndarray, level: int = LEVEL, floor: float = DENSITY_FLOOR) -> XCGrid:
    """The local-term grid of ``sysm`` (an :class:`rtml.datasets.engine.system.ElectronicSystem`) around ``rho0``
    [S, N, N] (AO, the store's spin layout: S = 1 total density of a closed shell, 2 = α/β)."""
    rho0 = np.asarray(rho0).real
    if rho0.ndim != 3 or rho0.shape[1:] != (sysm.nbf, sysm.nbf):
        raise DataError("<xc grid>", "rho0", f"[S, {sysm.nbf}, {sysm.nbf}]", str(rho0.shape))
    grids = dft.gen_grid.Grids(sysm.mol)
    grids.level = level
    grids.build()
    ao = dft.numint.eval_ao(sysm.mol, grids.coords)  # [G0, N]
    spin = rho0 if rho0.shape[0] == 2 else np.stack([0.5 * rho0[0], 0.5 * rho0[0]])  # [2, N, N]
    dens = np.einsum("gm,smn,gn->sg", ao, spin, ao, optimize=True)  # [2, G0]
    keep = dens.sum(0) > floor
    dens = np.ascontiguousarray(dens[:, keep])
    v0 = f0 = None
    if is_lda(sysm.cfg.xc):
        v0, f0 = lda_potential(sysm.cfg.xc, dens, deriv=2)
    return XCGrid(orbitals=np.ascontiguousarray(ao[keep] @ sysm.x), weights=np.ascontiguousarray(grids.weights[keep]),
                  density0=dens, functional=sysm.cfg.xc, potential0=v0, kernel0=f0)


def is_lda(xc: str) -> bool:
    """Whether ``xc`` (PySCF/libxc name) is a pure LDA functional (no gradient terms, no exact exchange)."""
    ni = dft.numint.NumInt()
    return ni._xc_type(xc) == "LDA" and ni.hybrid_coeff(xc) == 0


def lda_potential(xc: str, density: np.ndarray, deriv: int = 1):
    """The spin-resolved LDA potential v_σ(n_α, n_β) [2, G] (Hartree) of ``density`` [2, G] through libxc; with
    ``deriv=2`` also the kernel f_στ [2, 2, G]. Other functional types are refused by name (their local part
    depends on ∇n, which the grid term does not carry)."""
    if not is_lda(xc):
        raise DataError("<xc grid>", "functional", "a pure LDA functional for the local term", xc)
    rho = np.maximum(np.asarray(density, np.float64), 0.0)
    _, vxc, fxc, _ = dft.libxc.eval_xc(xc, (rho[0], rho[1]), spin=1, deriv=deriv)
    v = np.asarray(vxc[0]).T  # [2, G]
    if deriv < 2:
        return v
    f2 = np.asarray(fxc[0])  # [G, 3]: aa, ab, bb
    f = np.stack([np.stack([f2[:, 0], f2[:, 1]]), np.stack([f2[:, 1], f2[:, 2]])])  # [2, 2, G]
    return v, f


def exact_local(grid_functional: str, density0: np.ndarray, potential0: np.ndarray,
                density: np.ndarray) -> np.ndarray:
    """v_xc(n) − v_xc(n0) [..., 2, G] for densities [..., 2, G] (the exact adiabatic LDA's local term, the oracle
    of :mod:`rtml.models.local_xc`); ``density0`` [2, G] is not used beyond its shape check."""
    shape = np.shape(density)
    if shape[-2:] != np.shape(density0):
        raise DataError("<xc grid>", "density", f"[..., {', '.join(map(str, np.shape(density0)))}]", str(shape))
    dens = np.asarray(density, np.float64).reshape(-1, *shape[-2:])
    out = np.stack([lda_potential(grid_functional, d) for d in dens]) - potential0
    return out.reshape(shape)
