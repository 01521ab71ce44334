"""The one in-memory trajectory type of rtml, with validation.

Units: atomic units everywhere except ``positions`` (Å, as in the HDF5 schema). ``density`` is the AO-basis one-electron
density matrix: ``n_spin == 1`` holds the closed-shell total density (trace(P S) = N), ``n_spin == 2`` holds the alpha
and beta densities (trace(P_a S) + trace(P_b S) = N). The phase convention is P_ij = sum_k n_k C_ik C_jk^*
(PySCF's and NWChem's). ``dipole`` is nuclear + electronic, in e*bohr, about the coordinate origin (the gauge origin).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from rtml.datasets.basis import BasisInfo
from rtml.datasets.errors import DataError

ELEMENTS = (
    ["X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr"]
)


def atomic_number(symbol: str, source: str = "<memory>") -> int:
    """Z of an element symbol (case-insensitive, H..Kr)."""
    sym = symbol.strip().capitalize()
    if sym not in ELEMENTS[1:]:
        raise DataError(source, "element", "a known element symbol (H..Kr)", repr(symbol))
    return ELEMENTS.index(sym)


@dataclass(kw_only=True)
class Tolerances:
    """Validation tolerances. ``hermiticity``: max |P - P^H|; ``trace``: |sum_s tr(P_s S) - N| (electrons)."""

    hermiticity: float = 1e-5
    trace: float = 1e-4


@dataclass(kw_only=True)
class Trajectory:
    """One RT-TDDFT trajectory of one molecule at one geometry under one field."""

    molecule: str
    atomic_numbers: np.ndarray  # [n_atoms] int32
    positions: np.ndarray  # [n_atoms, 3] float64, Å
    charge: int
    multiplicity: int
    n_electrons: int
    basis_name: str
    functional: str
    dt: float  # a.u. of time
    basis: BasisInfo
    overlap: np.ndarray  # [nbf, nbf] float64
    core_hamiltonian: np.ndarray | None  # [nbf, nbf] float64
    density: np.ndarray  # [T, n_spin, nbf, nbf] complex
    field: np.ndarray  # [T, 3] float64, a.u. (E_h / (e a0))
    time: np.ndarray  # [T] float64, a.u.
    energy: np.ndarray  # [T] float64, Hartree, field-free total energy E[P(t)]; NaN where not computed (surrogate frames)
    dipole: np.ndarray  # [T, 3] float64, e*bohr
    meta: dict = field(default_factory=dict)  # free-form JSON-able provenance (field spec, integrator, seed, ...)
    # Fock supervision: V_xc(t) = F(t) - h - J[P(t)] - E(t).r [T, n_spin, nbf, nbf] float32 (pure functionals) or
    # complex64 (exact exchange); None when the source has none (older stores, NWChem imports).
    xc_potential: np.ndarray | None = None
    # The field averaged over each step [T-1, 3] a.u., when the frames are a strided view of a finer grid
    # (:meth:`strided`); None: the trapezoid midpoint of the frame values. Never stored: derived on reading.
    step_field_mean: np.ndarray | None = None

    def step_field(self) -> np.ndarray:
        """[T-1, 3] a.u.: the field a propagator should use over each step (its mean over the step)."""
        if self.step_field_mean is not None:
            return self.step_field_mean
        return 0.5 * (self.field[1:] + self.field[:-1])

    def strided(self, stride: int) -> Trajectory:
        """Every ``stride``-th frame (0, s, 2s, …) as a trajectory of time step s·dt, with the field averaged over
        each coarse step on the fine grid (:attr:`step_field_mean`): what a propagator taking steps of s·dt sees of
        this reference, and the reference's own time grid at the frames both share."""
        if stride < 1:
            raise ValueError(f"stride: expected an integer >= 1, got {stride}")
        if stride == 1:
            return self
        n = (self.n_steps - 1) // stride  # coarse steps
        if n < 1:
            raise ValueError(f"stride {stride}: the trajectory has {self.n_steps} frames, fewer than 1 + stride")
        sl = slice(0, n * stride + 1, stride)
        fine = self.step_field()[:n * stride]  # [n*s, 3]
        return dataclasses.replace(
            self, density=self.density[sl], field=self.field[sl], time=self.time[sl], energy=self.energy[sl],
            dipole=self.dipole[sl], dt=self.dt * stride,
            xc_potential=None if self.xc_potential is None else self.xc_potential[sl],
            step_field_mean=fine.reshape(n, stride, 3).mean(1),
            meta={**self.meta, "stride": stride * int(self.meta.get("stride", 1))})

    @property
    def nbf(self) -> int:
        return int(self.overlap.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.density.shape[0])

    @property
    def n_spin(self) -> int:
        return int(self.density.shape[1])

    @property
    def n_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    def electron_count(self) -> np.ndarray:
        """[T] float64: sum over spins of Re tr(P_s S)."""
        return np.einsum("tsij,ji->t", self.density, self.overlap).real

    def meta_json(self) -> str:
        return json.dumps(self.meta, sort_keys=True, default=_jsonable)

    def validate(self, source: str = "<memory>", tol: Tolerances | None = None) -> Trajectory:
        """Check shapes, dtypes, finiteness, Hermiticity, trace and basis metadata; raise :class:`DataError`."""
        tol = tol or Tolerances()
        n_atoms = _check_array(source, "geometry/atomic_numbers", self.atomic_numbers, 1, np.integer)[0]
        if n_atoms < 1:
            raise DataError(source, "geometry/atomic_numbers", "at least one atom", "0")
        if np.any(self.atomic_numbers < 1) or np.any(self.atomic_numbers >= len(ELEMENTS)):
            raise DataError(source, "geometry/atomic_numbers", f"Z in [1, {len(ELEMENTS) - 1}]",
                            str(sorted(set(self.atomic_numbers.tolist()))))
        _check_array(source, "geometry/positions", self.positions, 2, np.floating, (n_atoms, 3))
        dens = _check_array(source, "dynamics/density", self.density, 4, np.complexfloating)
        T, n_spin, nbf, nbf2 = dens
        if T < 1 or nbf < 1 or nbf != nbf2 or n_spin not in (1, 2):
            raise DataError(source, "dynamics/density", "shape (T>=1, n_spin in {1,2}, nbf, nbf)", str(dens))
        _check_array(source, "matrices/overlap", self.overlap, 2, np.floating, (nbf, nbf))
        if self.core_hamiltonian is not None:
            _check_array(source, "matrices/core_hamiltonian", self.core_hamiltonian, 2, np.floating, (nbf, nbf))
        _check_array(source, "dynamics/field", self.field, 2, np.floating, (T, 3))
        _check_array(source, "dynamics/time", self.time, 1, np.floating, (T,))
        _check_array(source, "dynamics/energy", self.energy, 1, np.floating, (T,), allow_nan=True)
        _check_array(source, "dynamics/dipole", self.dipole, 2, np.floating, (T, 3))
        self.basis.check(source, nbf, n_atoms)
        if self.xc_potential is not None:
            if not isinstance(self.xc_potential, np.ndarray) or self.xc_potential.shape != tuple(dens):
                raise DataError(source, "dynamics/xc_potential", f"shape {tuple(dens)} (like the density)",
                                str(getattr(self.xc_potential, "shape", type(self.xc_potential).__name__)))
            if not np.all(np.isfinite(self.xc_potential)):
                raise DataError(source, "dynamics/xc_potential", "finite values (no NaN/Inf)")
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise DataError(source, "attrs/dt", "a positive finite time step (a.u.)", repr(self.dt))
        if T > 1 and np.max(np.abs(np.diff(self.time) - self.dt)) > 1e-6 * max(1.0, float(np.abs(self.time).max())):
            raise DataError(source, "dynamics/time", f"uniform spacing dt={self.dt}")
        n_el = int(self.atomic_numbers.sum()) - int(self.charge)
        if self.n_electrons != n_el:
            raise DataError(source, "attrs/n_electrons", f"sum(Z) - charge = {n_el}", str(self.n_electrons))
        if self.multiplicity < 1 or (self.multiplicity - 1) % 2 != n_el % 2:
            raise DataError(source, "attrs/multiplicity", f"a multiplicity compatible with {n_el} electrons",
                            str(self.multiplicity))
        if n_spin == 1 and self.multiplicity != 1:
            raise DataError(source, "dynamics/density", "n_spin=2 (alpha, beta) for an open-shell molecule",
                            "n_spin=1")
        herm = float(np.max(np.abs(self.density - np.conj(np.swapaxes(self.density, -1, -2)))))
        if not herm <= tol.hermiticity:
            raise DataError(source, "dynamics/density", f"Hermitian matrices (max|P - P^H| <= {tol.hermiticity:g})",
                            f"max|P - P^H| = {herm:.3e}")
        ne = self.electron_count()
        worst = int(np.argmax(np.abs(ne - n_el)))
        if not abs(ne[worst] - n_el) <= tol.trace:
            raise DataError(source, "dynamics/density", f"trace(P S) = n_electrons = {n_el} (tol {tol.trace:g})",
                            f"{ne[worst]:.8f} at step {worst}")
        return self


def _check_array(source, name, arr, ndim, kind, shape=None, allow_nan=False):
    """``allow_nan``: NaN marks a value not computed (±Inf is still an error)."""
    if not isinstance(arr, np.ndarray):
        raise DataError(source, name, "a numpy array", type(arr).__name__)
    if arr.ndim != ndim:
        raise DataError(source, name, f"{ndim} dimensions", f"shape {arr.shape}")
    if not np.issubdtype(arr.dtype, kind):
        raise DataError(source, name, f"dtype of kind {kind.__name__}", str(arr.dtype))
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise DataError(source, name, f"shape {tuple(shape)}", str(arr.shape))
    bad_mask = np.isinf(arr) if allow_nan else ~np.isfinite(arr) if kind is not np.integer else None
    if bad_mask is not None and np.any(bad_mask):
        bad = np.argwhere(bad_mask)[0].tolist()
        raise DataError(source, name, "no ±Inf (NaN = not computed)" if allow_nan else "finite values (no NaN/Inf)",
                        f"{arr[tuple(bad)]} at index {bad}")
    return arr.shape


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
