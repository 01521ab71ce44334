"""A molecule at one geometry with its PySCF mean-field object: ground state, Fock builds and observables.

Hamiltonian in the length gauge: F(P, t) = h_core + V_eff[P] + E(t) . r, i.e. the dipole coupling -mu.E with the
electronic dipole operator mu = -r. r is PySCF's ``int1e_r`` about the coordinate origin (the gauge origin; rtml
geometries put the centre of nuclear charge there). Densities are AO-basis, stacked per spin ``[n_spin, nbf, nbf]``:
one total density for closed shells (RKS/RHF), alpha and beta for open shells (UKS/UHF).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pyscf import dft, gto, lib, scf

from rtml.datasets.basis import BasisInfo, basis_info_from_mol
from rtml.datasets.engine.numint_cache import CachedNumInt
from rtml.datasets.errors import SCFConvergenceError
from rtml.datasets.molecules import Molecule

HF_NAMES = ("hf", "rhf", "uhf")

# NWChem 7.0.2 'grid xfine' as its output prints it ("Grid Information"): Mura–Knowles radial quadrature, 100
# radial shells for every element, Lebedev 1202 (H, He) / 1454 (Li onwards) angular points, pruning on. PySCF builds
# the same quadrature (radi.mura_knowles, the same Lebedev orders, its default NWChem-style pruning); the atomic
# partition differs (NWChem's 'Erf1' weights, not in PySCF: Stratmann's, the closest, is used).
GRIDS = {"nwchem-xfine": {"radial": 100, "angular": lambda z: 1202 if z <= 2 else 1454}}


@dataclass(kw_only=True)
class SystemConfig:
    """Electronic-structure settings. ``xc``: a PySCF functional string ('LDA,VWN' = NWChem 'slater vwn_5';
    'PBE', 'B3LYP', ...) or 'HF'. ``grid_level``: PySCF DFT grid level. ``scf_conv_tol``: Hartree; ``scf_conv_tol_grad``:
    orbital gradient (the density is only as good as sqrt(conv_tol) without it)."""

    basis: str = "6-31g"
    xc: str = "LDA,VWN"
    grid_level: int = 3
    grid: Literal["pyscf", "nwchem-xfine"] = "pyscf"  # 'nwchem-xfine': NWChem's xfine grid (see GRIDS), else grid_level
    scf_conv_tol: float = 1e-11
    scf_conv_tol_grad: float = 1e-8
    scf_max_cycle: int = 200
    threads: int = 1  # OpenMP threads for PySCF; 1 is fastest for small molecules (run one trajectory per core)
    ao_cache_mb: float = 2048.0  # cache AO values on the DFT grid up to this size (MB; 0: off; same results)
    complex_exchange: Literal["split", "pyscf"] = "split"  # hybrids/HF: how V_eff of a complex P is built (veff)
    device: Literal["cpu", "cuda"] = "cpu"  # 'cuda': Fock builds in gpu4pyscf (rtml.datasets.engine.gpu_system)


def set_grid(grids, mol, name: str) -> None:
    """Point ``grids`` (a PySCF ``Grids``) at the named grid of :data:`GRIDS`."""
    from pyscf.dft import gen_grid, radi

    if name not in GRIDS:
        raise ValueError(f"SystemConfig.grid: expected 'pyscf' or one of {sorted(GRIDS)}, got {name!r}")
    g = GRIDS[name]
    grids.atom_grid = {mol.atom_pure_symbol(i): (g["radial"], g["angular"](int(mol.atom_charge(i))))
                       for i in range(mol.natm)}
    grids.radi_method = radi.mura_knowles
    grids.becke_scheme = gen_grid.stratmann


class ElectronicSystem:
    """Ground state, Fock builds and observables of one molecule at one geometry."""

    def __init__(self, molecule: Molecule, cfg: SystemConfig):
        self.molecule, self.cfg = molecule, cfg
        self.mol = gto.M(atom=molecule.pyscf_atom(), basis=cfg.basis, charge=molecule.charge,
                         spin=molecule.multiplicity - 1, unit="Angstrom", cart=False, verbose=0)
        self.open_shell = molecule.multiplicity != 1
        self.is_hf = cfg.xc.lower() in HF_NAMES
        if self.is_hf:
            self.mf = scf.UHF(self.mol) if self.open_shell else scf.RHF(self.mol)
        else:
            self.mf = dft.UKS(self.mol) if self.open_shell else dft.RKS(self.mol)
            self.mf.xc = cfg.xc
            self.mf.grids.level = cfg.grid_level
            if cfg.grid != "pyscf":
                set_grid(self.mf.grids, self.mol, cfg.grid)
            if cfg.ao_cache_mb > 0:  # the geometry is fixed: evaluate the AOs on the grid once (same results)
                self.mf._numint = CachedNumInt(cfg.ao_cache_mb)
        self.mf.conv_tol = cfg.scf_conv_tol
        self.mf.conv_tol_grad = cfg.scf_conv_tol_grad
        self.mf.max_cycle = cfg.scf_max_cycle
        # Pure functionals see only Re P (J and Vxc depend on the real symmetric part); exact exchange sees Im P too.
        self.needs_complex = self.is_hf or bool(self.mf._numint.libxc.is_hybrid_xc(cfg.xc))
        self._omega, self._hyb = (0.0, 1.0) if self.is_hf else \
            self.mf._numint.rsh_and_hybrid_coeff(cfg.xc, spin=self.mol.spin)[::2]
        self.n_spin = 2 if self.open_shell else 1
        self.overlap = self.mol.intor("int1e_ovlp")  # [nbf, nbf] float64
        self.hcore = self.mf.get_hcore()  # [nbf, nbf] float64
        with self.mol.with_common_orig((0.0, 0.0, 0.0)):
            self.r_ints = self.mol.intor("int1e_r", comp=3)  # [3, nbf, nbf] float64, bohr
        w, v = np.linalg.eigh(self.overlap)
        self.x = (v / np.sqrt(w)) @ v.T  # S^-1/2, [nbf, nbf]
        self.x_inv = (v * np.sqrt(w)) @ v.T  # S^+1/2
        self.nuclear_dipole = np.einsum("a,ax->x", self.mol.atom_charges(), self.mol.atom_coords())  # [3] e*bohr
        self.basis: BasisInfo = basis_info_from_mol(self.mol)
        self._e_nuc = self.mol.energy_nuc()

    @property
    def nbf(self) -> int:
        return self.overlap.shape[0]

    def ground_state(self, guess: np.ndarray | None = None) -> np.ndarray:
        """Converged SCF density [n_spin, nbf, nbf] complex128; raises if the SCF does not converge.

        ``guess``: an initial AO density (PySCF's ``dm0``, [nbf, nbf] or [2, nbf, nbf]); default PySCF's ``minao``.
        The number of SCF iterations is left in ``self.scf_cycles``."""
        if guess is not None:
            guess = np.asarray(guess).real
            if self.open_shell and guess.ndim == 2:
                guess = np.stack([guess / 2, guess / 2])
            elif not self.open_shell and guess.ndim == 3:
                guess = guess.sum(0)
            if guess.shape[-1] != self.nbf:
                raise ValueError(f"{self.molecule.name}: SCF guess has {guess.shape[-1]} basis functions, the "
                                 f"{self.cfg.basis} basis {self.nbf}")
        self.mf.kernel(dm0=guess)
        self.scf_cycles = int(getattr(self.mf, "cycles", -1))
        if not self.mf.converged:
            raise SCFConvergenceError(f"SCF did not converge for {self.molecule.name} ({self.cfg.basis}, {self.cfg.xc}) "
                               f"in {self.cfg.scf_max_cycle} cycles")
        dm = np.asarray(self.mf.make_rdm1())
        return dm.reshape(self.n_spin, self.nbf, self.nbf).astype(np.complex128)

    def veff(self, p: np.ndarray):
        """Effective two-electron potential of a complex Hermitian density [n_spin, nbf, nbf] (PySCF tagged array).

        J and V_xc see only Re P. With exact exchange (global hybrids, HF) and ``complex_exchange='split'`` (the
        default) PySCF builds V_eff[Re P] on real arrays and the exchange of Im P is added as −i·c·a·K[Im P]
        (c = 1/2 closed shell, 1 per spin), with its exchange energy: the same operator and energy as handing PySCF
        the complex P ('pyscf'), which evaluates the density on the grid in complex arithmetic (3–4× slower
        for C6H6/B3LYP); ``benchmarks/bench_engine.py`` checks the two agree."""
        dm = p if self.open_shell else p[0]
        if not self.needs_complex:
            return self.mf.get_veff(self.mol, dm.real, hermi=1)
        if self.cfg.complex_exchange == "pyscf" or self._omega != 0 or not np.any(dm.imag):
            return self.mf.get_veff(self.mol, dm, hermi=1)  # range-separated: PySCF's own complex path
        v = self.mf.get_veff(self.mol, np.ascontiguousarray(dm.real), hermi=1)
        im = np.ascontiguousarray(dm.imag)  # antisymmetric
        vk = self._hyb * self.mf.get_k(self.mol, im, hermi=0)
        c = 1.0 if self.open_shell else 0.5
        out = np.asarray(v) - 1j * c * vk
        if getattr(v, "exc", None) is None:  # HF: energy_elec reads the complex V_eff itself
            return out
        exc = v.exc + 0.5 * c * float(np.sum(im * np.swapaxes(vk, -1, -2)))
        return lib.tag_array(out, ecoul=v.ecoul, exc=exc, vj=None, vk=None)

    def coulomb(self, p_total: np.ndarray) -> np.ndarray:
        """J[P] [nbf, nbf] float64 of the spin-summed density (its real part)."""
        return self.mf.get_j(self.mol, np.asarray(p_total).real, hermi=1)

    def fock(self, p: np.ndarray, e_field: np.ndarray):
        """Fock matrices [n_spin, nbf, nbf] complex128 with the field term, and the veff for :meth:`energy`."""
        vhf = self.veff(p)
        f = self.hcore + np.asarray(vhf).reshape(self.n_spin, self.nbf, self.nbf)
        f = f + np.einsum("x,xij->ij", e_field, self.r_ints)
        return f, vhf

    def energy(self, p: np.ndarray, vhf) -> float:
        """Field-free total energy E[P] (Hartree, nuclear repulsion included)."""
        dm = p if self.open_shell else p[0]
        e_elec, _ = self.mf.energy_elec(dm if self.needs_complex else dm.real, self.hcore, vhf)
        return float(np.real(e_elec)) + self._e_nuc

    def dipole(self, p: np.ndarray) -> np.ndarray:
        """Total dipole [3] (e*bohr): nuclear minus electronic, about the origin."""
        return self.nuclear_dipole - np.einsum("xij,sji->x", self.r_ints, p).real

    # Löwdin (orthonormal) basis: P' = S^1/2 P S^1/2, F' = S^-1/2 F S^-1/2.
    def to_orth(self, p_ao: np.ndarray) -> np.ndarray:
        return self.x_inv @ p_ao @ self.x_inv

    def from_orth(self, p_orth: np.ndarray) -> np.ndarray:
        return self.x @ p_orth @ self.x

    def fock_to_orth(self, f_ao: np.ndarray) -> np.ndarray:
        return self.x @ f_ao @ self.x
