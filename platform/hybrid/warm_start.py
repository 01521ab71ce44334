"""SCF warm start: a known ground-state density of a neighbouring geometry, rotated onto the new one.

The surrogate propagates *from* a ground state (its exact terms need V_xc[P(0)]); it does not predict one. What a
trained project does hold are converged ground-state densities of many geometries of the same molecule (frame 0
of every stored trajectory). For a new geometry the nearest of them (after the best proper rotation, Kabsch, about
the centre of nuclear charge where every rtml geometry is centred) is rotated exactly into the new frame with the
real Wigner-D matrices of the AO shells (:func:`rtml.models.irreps.ao_rotation`: the same transformation the
equivariance tests use) and handed to PySCF as ``dm0``. Bond-length changes are not corrected: the guess is the
neighbour's electronic structure in the new orientation.

Measured by ``benchmarks/bench_scf_guess.py`` as SCF iterations relative to PySCF's default ``minao`` guess (the
"relative SCF iterations" metric of the WANet/QHNet papers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rtml.datasets.molecules import Molecule
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.models.irreps import ao_rotation


@dataclass
class KnownDensity:
    molecule: Molecule  # centred, Å
    density: np.ndarray  # [n_spin, nbf, nbf] AO ground-state density (complex or real)
    shell_l: np.ndarray  # [n_shells] angular momentum per shell, PySCF order


def kabsch(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Proper rotation R [3, 3] minimising Σ w |R src_i − dst_i|² (both centred) and the weighted RMSD (Å)."""
    h = (weights[:, None] * src).T @ dst  # [3, 3]
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    rmsd = float(np.sqrt((weights * ((src @ r.T - dst) ** 2).sum(1)).sum() / weights.sum()))
    return r, rmsd


def rotated_guess(target: Molecule, known: list[KnownDensity]) -> tuple[np.ndarray, float]:
    """The nearest known density (same elements in the same order) rotated onto ``target``; returns
    (AO density [n_spin, nbf, nbf] real, the RMSD in Å of the neighbour after alignment)."""
    same = [k for k in known if tuple(k.molecule.symbols) == tuple(target.symbols)]
    if not same:
        raise ValueError(f"{target.name}: no known density of a molecule with atoms {target.symbols}")
    z = target.atomic_numbers.astype(np.float64)
    tgt = target.centred().positions
    best = min(((k, *kabsch(k.molecule.centred().positions, tgt, z)) for k in same), key=lambda x: x[2])
    k, r, rmsd = best
    w = ao_rotation(torch.from_numpy(r), k.shell_l).numpy()  # [nbf, nbf]
    p = np.asarray(k.density).real
    return np.einsum("ij,sjk,lk->sil", w, p, w), rmsd


def known_densities(store_path: str, molecule: str | None = None) -> list[KnownDensity]:
    """Frame-0 ground-state densities of every trajectory (of ``molecule``, if given) in a Zarr store."""

    st = TrajectoryStore(store_path)
    out = []
    for e in st.index:
        if molecule is not None and e["molecule"] != molecule:
            continue
        tr = st.read(e["id"])
        first = np.r_[0, np.flatnonzero(np.diff(tr.basis.shell_index)) + 1]
        out.append(KnownDensity(
            molecule=Molecule(name=tr.molecule, symbols=tuple(_symbols(tr.atomic_numbers)),
                              positions=np.asarray(tr.positions), charge=tr.charge, multiplicity=tr.multiplicity),
            density=tr.density[0],
            shell_l=np.asarray(tr.basis.l)[first]))
    return out


def _symbols(numbers) -> list[str]:
    from pyscf.data.elements import ELEMENTS

    return [ELEMENTS[int(z)] for z in numbers]
