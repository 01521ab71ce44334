"""Cheap model inputs for tests: a PySCF molecule's overlap, basis metadata and a (non-SCF) guess density, and the
exact Kohn–Sham terms of such a batch (no SCF: V_xc of the guess density)."""

from __future__ import annotations

import numpy as np
import torch

from rtml.datasets.basis import basis_info_from_mol
from rtml.datasets.molecules import get_molecule
from rtml.models.inputs import MoleculeBatch, spin_resolved


def pyscf_mol(name: str, basis: str, positions=None):
    from pyscf import gto

    m = get_molecule(name)
    pos = m.positions if positions is None else positions
    mol = gto.M(atom=[(s, p) for s, p in zip(m.symbols, pos)], basis=basis, unit="Angstrom", charge=m.charge,
                spin=m.multiplicity - 1, verbose=0)
    return m, mol


def guess_inputs(names_bases: list[tuple[str, str]], seed: int = 0, noise: float = 1e-3):
    """MoleculeBatch + [B, 2, N, N] complex128 densities: minao guess plus a small Hermitian perturbation."""
    from pyscf import scf

    trajs, rhos = [], []
    rng = np.random.default_rng(seed)
    for name, basis in names_bases:
        m, mol = pyscf_mol(name, basis)
        mf = scf.UHF(mol)
        dm = mf.get_init_guess()  # [2, n, n]
        n = mol.nao_nr()
        pert = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
        rhos.append(dm + noise * (pert + pert.conj().T))

        class T:  # the fields MoleculeBatch.from_trajectories reads
            pass
        t = T()
        t.positions, t.atomic_numbers, t.overlap = m.positions, m.atomic_numbers, mol.intor("int1e_ovlp")
        t.basis = basis_info_from_mol(mol)
        trajs.append(t)
    mb = MoleculeBatch.from_trajectories(trajs)
    rho = torch.stack([spin_resolved(torch.from_numpy(r), mb.nbf) for r in rhos])
    return mb, rho


def with_kohn_sham(mol: MoleculeBatch, rho0, names_bases, kernel: bool = True) -> MoleculeBatch:
    """Attach exact Kohn–Sham terms (PySCF h, r, J factor; V_xc of the guess density; the xc kernel when
    ``kernel``) to a :func:`guess_inputs` batch. Closed shells use the total density, open shells α and β."""
    from rtml.datasets.engine.system import ElectronicSystem, SystemConfig
    from rtml.datasets.kohn_sham import KohnShamBatch, KohnShamTerms, j_factor, xc_potential
    from rtml.datasets.xc_kernel import xc_kernel

    terms = []
    for b, (name, basis) in enumerate(names_bases):
        m, _ = pyscf_mol(name, basis)
        sysm = ElectronicSystem(m, SystemConfig(basis=basis))
        n = sysm.nbf
        p = rho0[b, :, :n, :n].numpy()  # [2, n, n]
        p = p if sysm.open_shell else p.sum(0, keepdims=True)  # the store's spin layout
        terms.append(KohnShamTerms(overlap=sysm.overlap, hcore=sysm.hcore, r_ints=sysm.r_ints,
                                   j_factor=j_factor(sysm), vxc0=xc_potential(sysm, p), rho0=p,
                                   xc_kernel=xc_kernel(sysm, p) if kernel else None))
    mol.ks = KohnShamBatch.from_terms(terms, mol.nbf)
    return mol
