"""Propagate one molecule under one field and return a :class:`~rtml.datasets.trajectory.Trajectory`."""

from __future__ import annotations

import time as _time
from dataclasses import asdict, dataclass, field

import numpy as np
import pyscf
from pyscf import lib
from tqdm.auto import tqdm

from rtml.datasets.engine.device import make_system
from rtml.datasets.engine.propagator import (
    INTEGRATORS,
    DriftMonitor,
    IntegratorConfig,
    expm_herm,
    unitary_apply,
)
from rtml.datasets.engine.stepper import ReferenceStepper
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.errors import DataError
from rtml.datasets.fields import FieldSpec
from rtml.datasets.kohn_sham import xc_potential
from rtml.datasets.molecules import Molecule
from rtml.datasets.trajectory import Trajectory


@dataclass(kw_only=True)
class EngineConfig:
    """Everything the reference propagator needs besides the molecule and the field. ``n_steps`` counts recorded
    states including t = 0, so the trajectory spans (n_steps - 1) * dt a.u."""

    system: SystemConfig = field(default_factory=SystemConfig)
    integrator: IntegratorConfig = field(default_factory=IntegratorConfig)
    n_steps: int = 200  # recorded states including t = 0 (the default of `rtml generate` and `rtml adapt` too)
    record_xc: bool = True  # store V_xc(t) = F(t) - h - J[P(t)] - E(t).r per frame (Fock supervision)

    @classmethod
    def from_dict(cls, d: dict) -> EngineConfig:
        return cls(system=SystemConfig(**d.get("system", {})), integrator=IntegratorConfig(**d.get("integrator", {})),
                   n_steps=int(d.get("n_steps", 400)), record_xc=bool(d.get("record_xc", True)))


def propagate(molecule: Molecule, field_spec: FieldSpec, cfg: EngineConfig, meta: dict | None = None,
              progress: bool = False) -> Trajectory:
    """Run RT-TDDFT from the SCF ground state. Raises PropagationError on blow-up (nothing partial is returned)."""
    with lib.with_omp_threads(cfg.system.threads):
        return _propagate(molecule, field_spec, cfg, meta, progress)


def _propagate(molecule, field_spec, cfg, meta, progress):
    icfg = cfg.integrator
    if icfg.integrator not in INTEGRATORS:
        raise DataError("<engine config>", "integrator", f"one of {INTEGRATORS}", repr(icfg.integrator))
    if cfg.n_steps < 1:
        raise DataError("<engine config>", "n_steps", "at least 1", str(cfg.n_steps))
    t_start = _time.perf_counter()
    sysm = make_system(molecule, cfg.system)
    dt, n = icfg.dt, cfg.n_steps
    times = dt * np.arange(n + 1)  # [n+1] a.u.
    e_rec = field_spec.values(times, dt)  # [n+1, 3] field as recorded
    e_fock = e_rec.copy()  # field used in the Fock matrices
    p_ao = sysm.ground_state()  # [S, nbf, nbf] complex128
    p = sysm.to_orth(p_ao)  # [S, nbf, nbf] orthonormal basis
    t_scf = _time.perf_counter()
    p_gs = p.copy()
    r_orth = sysm.fock_to_orth(sysm.r_ints)  # [3, nbf, nbf]
    if icfg.integrator == "mmut" and field_spec.kind == "delta":
        if abs(field_spec.t0) > 1e-12:
            raise DataError("<field spec>", "t0", "0 for a delta kick with integrator 'mmut'", str(field_spec.t0))
        # MMUT: the kick is an instantaneous unitary with the same impulse as NWChem's (amplitude * dt / 2).
        kick = expm_herm(np.einsum("x,xij->ij", e_rec[0], r_orth), 0.5 * dt)
        p = unitary_apply(kick, p)
        e_fock[:] = 0.0
    occ = 1.0 if sysm.open_shell else 2.0
    name = f"{molecule.name}/{cfg.system.basis}/{cfg.system.xc}"
    mon = DriftMonitor(icfg, molecule.n_electrons, occ, name)

    dens = np.empty((n, sysm.n_spin, sysm.nbf, sysm.nbf), np.complex128)  # [T, S, nbf, nbf]
    energy, dipole = np.empty(n), np.empty((n, 3))
    vxc = np.empty((n, sysm.n_spin, sysm.nbf, sysm.nbf), np.complex128) if cfg.record_xc else None
    stepper = ReferenceStepper(sysm, icfg, e_fock, p, p_gs)
    builds, iters = 1, []
    for k in tqdm(range(n), desc=name, disable=not progress, leave=False):
        dens[k] = sysm.from_orth(stepper.p)
        energy[k] = sysm.energy(dens[k], stepper.vhf)
        if vxc is not None:  # the Fock build of this frame is done: V_xc = V_eff - J costs one J build
            vxc[k] = xc_potential(sysm, dens[k], stepper.vhf)
        d_el = np.einsum("xij,sji->x", sysm.r_ints, dens[k]).real
        dipole[k] = sysm.nuclear_dipole - d_el
        mon.update(k, times[k], stepper.p, energy[k], d_el, e_fock[k])
        if k == n - 1:
            break
        nit = stepper.step(lambda msg, k=k: mon._fail(k, times[k], msg))
        builds += nit
        iters.append(nit)

    t_end = _time.perf_counter()
    wall = t_end - t_start
    info = {
        "source": "rtml-reference-engine",
        "pyscf_version": pyscf.__version__,
        "integrator": asdict(icfg),
        "system": asdict(cfg.system),
        "field_spec": field_spec.to_dict(),
        "fock_builds": builds,
        "mean_sc_iterations": float(np.mean(iters)) if iters else 0.0,
        "max_energy_drift": mon.max_energy,
        "max_trace_drift": mon.max_trace,
        "max_idempotency_error": mon.max_idem,
        "wall_seconds": wall,
        "scf_seconds": t_scf - t_start,
        "ms_per_step": 1e3 * (t_end - t_scf) / max(n - 1, 1),
        "gauge_origin_bohr": [0.0, 0.0, 0.0],
        "xc_potential_definition": "F(t) - h - J[P(t)] - E(t).r (AO, per spin of the density layout)",
    }
    info.update(meta or {})
    return Trajectory(
        molecule=molecule.name, atomic_numbers=molecule.atomic_numbers, positions=molecule.positions.copy(),
        charge=molecule.charge, multiplicity=molecule.multiplicity, n_electrons=molecule.n_electrons,
        basis_name=cfg.system.basis, functional=cfg.system.xc, dt=dt, basis=sysm.basis, overlap=sysm.overlap,
        core_hamiltonian=sysm.hcore, density=dens, field=e_rec[:n], time=times[:n], energy=energy, dipole=dipole,
        meta=info, xc_potential=None if vxc is None else _compact(vxc),
    )


def _compact(vxc: np.ndarray) -> np.ndarray:
    """V_xc as float32 for pure functionals (exactly real), complex64 when exact exchange makes it complex."""
    return vxc.real.astype(np.float32) if not np.any(vxc.imag) else vxc.astype(np.complex64)
