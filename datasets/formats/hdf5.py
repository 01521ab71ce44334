"""The design guide's HDF5 trajectory schema (``../shared/seeds``, section "Data Formats"), read and written exactly.

Layout: attrs ``molecule, n_atoms, n_electrons, n_basis, n_steps, dt, charge, multiplicity`` (plus rtml's ``basis``,
``functional``, ``rtml_meta`` JSON and ``schema_version``); ``geometry/positions`` (n_atoms, 3) float64 Å,
``geometry/atomic_numbers`` int32; ``basis/atom_index|angular_momentum|magnetic_quantum`` int32;
``matrices/overlap`` float64 and optional ``matrices/core_hamiltonian``; ``dynamics/density_real|density_imag``
(n_steps, n_spin, n_basis, n_basis) float32, ``dynamics/field`` (n_steps, 3), ``time``, ``energy``, ``dipole``
(n_steps, 3), all float32. Reading returns float64/complex128 arrays; float32 storage limits trace/Hermiticity
checks to ~1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from rtml.datasets.basis import BasisInfo, shells_from_lm
from rtml.datasets.errors import DataError
from rtml.datasets.trajectory import Tolerances, Trajectory

SCHEMA_VERSION = 1
_ATTRS = ("molecule", "n_atoms", "n_electrons", "n_basis", "n_steps", "dt", "charge", "multiplicity")


def write_hdf5(traj: Trajectory, path: str | Path) -> Path:
    """Write one trajectory; the file appears atomically (written to ``*.tmp`` then renamed)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    f32 = np.float32
    with h5py.File(tmp, "w") as f:
        a = f.attrs
        a["molecule"], a["n_atoms"], a["n_electrons"] = traj.molecule, traj.n_atoms, traj.n_electrons
        a["n_basis"], a["n_steps"], a["dt"] = traj.nbf, traj.n_steps, float(traj.dt)
        a["charge"], a["multiplicity"] = int(traj.charge), int(traj.multiplicity)
        a["basis"], a["functional"] = traj.basis_name, traj.functional
        a["rtml_meta"], a["schema_version"] = traj.meta_json(), SCHEMA_VERSION
        f["geometry/positions"] = np.asarray(traj.positions, np.float64)
        f["geometry/atomic_numbers"] = np.asarray(traj.atomic_numbers, np.int32)
        f["basis/atom_index"] = traj.basis.atom_index.astype(np.int32)
        f["basis/angular_momentum"] = traj.basis.l.astype(np.int32)
        f["basis/magnetic_quantum"] = traj.basis.m.astype(np.int32)
        f["matrices/overlap"] = np.asarray(traj.overlap, np.float64)
        if traj.core_hamiltonian is not None:
            f["matrices/core_hamiltonian"] = np.asarray(traj.core_hamiltonian, np.float64)
        f["dynamics/density_real"] = traj.density.real.astype(f32)
        f["dynamics/density_imag"] = traj.density.imag.astype(f32)
        for name in ("field", "time", "energy", "dipole"):
            f[f"dynamics/{name}"] = getattr(traj, name).astype(f32)
    tmp.replace(path)
    return path


def _get(f, src, name, dtype):
    if name not in f:
        raise DataError(src, name, "a dataset (the file is missing it: truncated or not written by the schema)")
    try:
        arr = np.asarray(f[name][()], dtype)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(src, name, "a readable dataset", f"{type(exc).__name__}: {exc}") from None
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise DataError(src, name, "finite values (no NaN/Inf)", f"{arr[tuple(bad)]} at index {bad}")
    return arr


def read_hdf5(path: str | Path, tol: Tolerances | None = None) -> Trajectory:
    """Read and validate one trajectory file; every problem is a :class:`DataError` naming file and field."""
    path = Path(path)
    src = str(path)
    if not path.exists():
        raise DataError(src, "file", "an existing HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(src, "file", "a readable HDF5 file", str(exc)) from None
    with f:
        for key in _ATTRS:
            if key not in f.attrs:
                raise DataError(src, f"attrs/{key}", "a root attribute of the trajectory schema")
        a = f.attrs
        re = _get(f, src, "dynamics/density_real", np.float64)
        im = _get(f, src, "dynamics/density_imag", np.float64)
        if re.shape != im.shape:
            raise DataError(src, "dynamics/density_imag", f"shape {re.shape} like density_real", str(im.shape))
        n_steps, nbf = int(a["n_steps"]), int(a["n_basis"])
        if re.ndim != 4 or re.shape[0] != n_steps or re.shape[2:] != (nbf, nbf):
            raise DataError(src, "dynamics/density_real", f"shape (n_steps={n_steps}, n_spin, {nbf}, {nbf})",
                            str(re.shape))
        l_ = _get(f, src, "basis/angular_momentum", np.int32)
        m_ = _get(f, src, "basis/magnetic_quantum", np.int32)
        at = _get(f, src, "basis/atom_index", np.int32)
        if not (len(l_) == len(m_) == len(at)):
            raise DataError(src, "basis", "atom_index, angular_momentum, magnetic_quantum of equal length",
                            f"{len(at)}, {len(l_)}, {len(m_)}")
        basis = BasisInfo(atom_index=at, l=l_, m=m_, shell_index=shells_from_lm(at, l_, m_))
        hcore = _get(f, src, "matrices/core_hamiltonian", np.float64) if "matrices/core_hamiltonian" in f else None
        meta = json.loads(a["rtml_meta"]) if "rtml_meta" in a else {}
        n_atoms_attr = int(a["n_atoms"])
        traj = Trajectory(
            molecule=str(a["molecule"]), atomic_numbers=_get(f, src, "geometry/atomic_numbers", np.int32),
            positions=_get(f, src, "geometry/positions", np.float64), charge=int(a["charge"]),
            multiplicity=int(a["multiplicity"]), n_electrons=int(a["n_electrons"]),
            basis_name=str(a.get("basis", "unknown")), functional=str(a.get("functional", "unknown")),
            dt=float(a["dt"]), basis=basis, overlap=_get(f, src, "matrices/overlap", np.float64),
            core_hamiltonian=hcore, density=re + 1j * im, field=_get(f, src, "dynamics/field", np.float64),
            time=_get(f, src, "dynamics/time", np.float64), energy=_get(f, src, "dynamics/energy", np.float64),
            dipole=_get(f, src, "dynamics/dipole", np.float64), meta=meta,
        )
    if n_atoms_attr != traj.n_atoms:
        raise DataError(src, "attrs/n_atoms", f"{traj.n_atoms} (rows of geometry/positions)", str(n_atoms_attr))
    # float32 storage: time spacing, trace and Hermiticity hold to ~1e-6 relative.
    return traj.validate(src, tol or Tolerances(hermiticity=1e-5, trace=1e-4 * max(1, traj.n_electrons)))
