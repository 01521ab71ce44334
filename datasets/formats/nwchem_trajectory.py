"""Build a :class:`Trajectory` from NWChem rt_tddft files.

NWChem writes no per-step complex density: the complex AO density exists only in ``.rt_restart`` files (one time per
file). A trajectory from NWChem therefore holds the densities of the restart files given (uniformly spaced in time),
with the dipole, field and energy of the output's time series at those times. Overlap and core Hamiltonian are
recomputed with PySCF from the parsed geometry and the basis name (the basis library must match NWChem's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pyscf import gto

from rtml.datasets.basis import basis_info_from_mol
from rtml.datasets.errors import DataError
from rtml.datasets.formats.nwchem import read_output, read_restart
from rtml.datasets.trajectory import Trajectory, atomic_number


def hill_formula(symbols: list[str]) -> str:
    """Lower-case Hill formula: C, H first when carbon is present, then alphabetical ('h2o', 'ch4', 'c6h6')."""
    counts = {s: symbols.count(s) for s in symbols}
    order = (["C", "H"] if "C" in counts else []) + sorted(s for s in counts if s not in (("C", "H") if "C" in counts
                                                                                          else ()))
    return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order if s in counts).lower()


def nwchem_trajectory(outputs: str | Path | list, restarts: list[str | Path], basis: str, functional: str,
                      molecule: str | None = None, charge: int | None = None, multiplicity: int = 1) -> Trajectory:
    """Densities from ``restarts`` (each a ``.rt_restart`` at one time) plus the time series of ``outputs``."""
    run = read_output(outputs)
    if not restarts:
        raise DataError(run.source, "restarts", "at least one .rt_restart file with the complex density")
    perm = run.nw_to_pyscf_permutation()
    q = run.charge if charge is None else charge
    if q is None:
        raise DataError(run.source, "System charge", "a 'System charge' line or an explicit charge")
    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(run.symbols, run.positions)], basis=basis, charge=q,
                spin=multiplicity - 1, unit="Angstrom", cart=False, verbose=0)
    if mol.nao_nr() != len(perm):
        raise DataError(run.source, "basis", f"{mol.nao_nr()} functions for basis '{basis}' (PySCF)",
                        f"{len(perm)} in the NWChem basis block")
    times, dens = [], []
    for r in sorted(restarts, key=lambda p: read_restart(p)[0]):
        t, p = read_restart(r, perm)
        if p.shape[1] != mol.nao_nr():
            raise DataError(str(r), "nbf_ao", f"{mol.nao_nr()} (the output's basis)", str(p.shape[1]))
        times.append(t)
        dens.append(p)
    times = np.asarray(times)
    if len(times) > 1:
        dt = float(np.diff(times).mean())
    else:  # one density: the propagation step of the output (header, or the spacing of its time series)
        dt = float(run.dt or np.diff(run.series_of("Dipole moment [system]")[0][:2])[0])

    def at(label):
        ts, vals = run.series_of(label)
        idx = [int(np.argmin(np.abs(ts - t))) for t in times]
        if np.any(np.abs(ts[idx] - times) > 1e-6):
            raise DataError(run.source, label, f"values at the restart times {times.tolist()}", f"times {ts[idx]}")
        return vals[idx]

    info = basis_info_from_mol(mol)
    return Trajectory(
        molecule=molecule or hill_formula(run.symbols),
        atomic_numbers=np.array([atomic_number(s) for s in run.symbols], np.int32), positions=run.positions,
        charge=q, multiplicity=multiplicity, n_electrons=int(mol.nelectron), basis_name=basis,
        functional=functional, dt=dt, basis=info, overlap=mol.intor("int1e_ovlp"),
        core_hamiltonian=mol.intor("int1e_kin") + mol.intor("int1e_nuc"), density=np.stack(dens),
        field=at("Applied E-field [system] (alpha spin)"), time=times, energy=at("Etot")[:, 0],
        dipole=at("Dipole moment [system]"),
        meta={"source": "nwchem", "outputs": [str(o) for o in (outputs if isinstance(outputs, list) else [outputs])],
              "restarts": [str(r) for r in restarts], "basis_permutation_nw_to_pyscf": perm.tolist()},
    ).validate(run.source)
