"""Basis-function metadata: which atom, angular momentum l and magnetic number m of every AO.

Convention (PySCF, spherical basis, ``mol.cart == False``), which every trajectory in rtml uses:

* Shells of an atom are ordered by l, then by contraction (1s 2s 3s 2p 3p 3d ...), atoms in input order.
* Within a p shell the order is (px, py, pz). We label them with the real-spherical m they correspond to:
  px -> m=+1, py -> m=-1, pz -> m=0.
* Within a shell of l >= 2 the order is m = -l, ..., +l (real solid harmonics; d: xy, yz, z^2, xz, x^2-y^2).

The map to e3nn's irreps (identity for p shells, an orthogonal mix for d and f) is in ``rtml.models.irreps``.
NWChem orders shells per atom as in the basis library (Pople SP shells become S then P), see
``rtml.datasets.formats.nwchem``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtml.datasets.errors import DataError

_P_M = (1, -1, 0)  # PySCF p order x, y, z as real-spherical m


@dataclass(kw_only=True)
class BasisInfo:
    """Per-AO metadata. All arrays have shape [nbf] and dtype int32."""

    atom_index: np.ndarray
    l: np.ndarray
    m: np.ndarray
    shell_index: np.ndarray

    @property
    def nbf(self) -> int:
        return int(self.atom_index.shape[0])

    def check(self, source: str, nbf: int, n_atoms: int) -> None:
        for name in ("atom_index", "l", "m", "shell_index"):
            arr = np.asarray(getattr(self, name))
            if arr.ndim != 1 or arr.shape[0] != nbf:
                raise DataError(source, f"basis/{name}", f"shape ({nbf},) to match nbf={nbf}", str(arr.shape))
        if nbf and (self.atom_index.min() < 0 or self.atom_index.max() >= n_atoms):
            raise DataError(source, "basis/atom_index", f"values in [0, {n_atoms})",
                            f"range [{self.atom_index.min()}, {self.atom_index.max()}]")
        if np.any(np.abs(self.m) > self.l):
            raise DataError(source, "basis/magnetic_quantum", "|m| <= l for every function")


def basis_info_from_mol(mol) -> BasisInfo:
    """Metadata of a PySCF ``Mole`` with a spherical basis, in PySCF's AO order."""
    if mol.cart:
        raise ValueError("rtml uses spherical basis functions: build the PySCF Mole with cart=False")
    atom, ang, mag, shell = [], [], [], []
    shell_id = 0
    for ib in range(mol.nbas):
        lval, ia = mol.bas_angular(ib), mol.bas_atom(ib)
        ms = _P_M if lval == 1 else tuple(range(-lval, lval + 1))
        for _ in range(mol.bas_nctr(ib)):
            atom += [ia] * len(ms)
            ang += [lval] * len(ms)
            mag += list(ms)
            shell += [shell_id] * len(ms)
            shell_id += 1
    info = BasisInfo(
        atom_index=np.asarray(atom, np.int32),
        l=np.asarray(ang, np.int32),
        m=np.asarray(mag, np.int32),
        shell_index=np.asarray(shell, np.int32),
    )
    if info.nbf != mol.nao_nr():
        raise RuntimeError(f"basis metadata has {info.nbf} functions but PySCF reports {mol.nao_nr()}")
    return info


def shells_from_lm(atom_index: np.ndarray, l: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Recover shell ids from (atom, l, m) in PySCF order: a new shell starts when atom or l changes or m repeats."""
    shell = np.zeros(len(l), np.int32)
    sid, seen = -1, set()
    for i in range(len(l)):
        new = i == 0 or atom_index[i] != atom_index[i - 1] or l[i] != l[i - 1] or int(m[i]) in seen
        if new:
            sid, seen = sid + 1, set()
        seen.add(int(m[i]))
        shell[i] = sid
    return shell
