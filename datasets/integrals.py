"""One-electron integrals a trajectory does not store, recomputed with PySCF from its geometry and basis name."""

from __future__ import annotations

import numpy as np

from rtml.datasets.errors import DataError


def dipole_integrals(traj, source: str = "<memory>") -> tuple[np.ndarray, np.ndarray]:
    """(r_ints [3, nbf, nbf] about the origin, bohr; nuclear dipole [3], e*bohr) of a :class:`Trajectory`, the
    same operator the reference engine uses for ``dipole``. Checks that the basis metadata matches PySCF's order."""
    from pyscf import gto

    atoms = [(int(z), tuple(map(float, p))) for z, p in zip(traj.atomic_numbers, traj.positions)]
    mol = gto.M(atom=atoms, basis=traj.basis_name, charge=int(traj.charge), spin=int(traj.multiplicity) - 1,
                unit="Angstrom", cart=False, verbose=0)
    if mol.nao != traj.nbf or not np.array_equal(
            np.concatenate([[mol.bas_angular(i)] * (2 * mol.bas_angular(i) + 1) * mol.bas_nctr(i)
                            for i in range(mol.nbas)]), np.asarray(traj.basis.l)):
        raise DataError(source, "basis", f"PySCF's AO order of basis '{traj.basis_name}' ({mol.nao} functions)",
                        f"{traj.nbf} functions in another order")
    with mol.with_common_orig((0.0, 0.0, 0.0)):
        r = mol.intor("int1e_r", comp=3)  # [3, nbf, nbf] float64
    return r, np.einsum("a,ax->x", mol.atom_charges(), mol.atom_coords())
