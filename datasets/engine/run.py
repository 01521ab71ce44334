"""Propagate one molecule under one field and return a :class:`~rtml.datasets.trajectory.Trajectory`."""

from __future__ import annotations

import time as _time
from dataclasses import asdict, dataclass, field

import numpy as np
import pyscf
from pyscf import lib
from tqdm.auto import tqdm

from rtml.datasets.engine.propagator import (
    INTEGRATORS,
    DriftMonitor,
    IntegratorConfig,
    expm_herm,
    unitary_apply,
)
from rtml.datasets.engine.system import ElectronicSystem, SystemConfig
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
    n_steps: int = 400
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
    sysm = ElectronicSystem(molecule, cfg.system)
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
    f_ao, vhf = sysm.fock(sysm.from_orth(p), e_fock[0])
    f = sysm.fock_to_orth(f_ao)
    g_prev = None  # field-free part of F' one step back, for extrapolation
    p_prev = None  # MMUT: P' at t - dt
    builds, iters = 1, []
    for k in tqdm(range(n), desc=name, disable=not progress, leave=False):
        dens[k] = sysm.from_orth(p)
        energy[k] = sysm.energy(dens[k], vhf)
        if vxc is not None:  # the Fock build of this frame is done: V_xc = V_eff - J costs one J build
            vxc[k] = xc_potential(sysm, dens[k], vhf)
        d_el = np.einsum("xij,sji->x", sysm.r_ints, dens[k]).real
        dipole[k] = sysm.nuclear_dipole - d_el
        mon.update(k, times[k], p, energy[k], d_el, e_fock[k])
        if k == n - 1:
            break
        g = f - np.einsum("x,xij->ij", e_fock[k], r_orth)
        if icfg.integrator == "mmut" and p_prev is not None:
            p_next = unitary_apply(expm_herm(f, 2 * dt), p_prev)
            f_ao, vhf = sysm.fock(sysm.from_orth(p_next), e_fock[k + 1])
            f_next, nit = sysm.fock_to_orth(f_ao), 1
        else:
            g_guess = g if g_prev is None else 2 * g - g_prev
            f_guess = g_guess + np.einsum("x,xij->ij", e_fock[k + 1], r_orth)
            tol = icfg.sc_atol + icfg.sc_rtol * float(np.max(np.abs(p - p_gs)))
            prev_err = np.inf
            for nit in range(1, icfg.sc_max_iter + 1):
                p_next = unitary_apply(expm_herm(0.5 * (f + f_guess), dt), p)
                f_ao, vhf = sysm.fock(sysm.from_orth(p_next), e_fock[k + 1])
                f_next = sysm.fock_to_orth(f_ao)
                err = float(np.max(np.abs(f_next - f_guess)))
                f_guess = f_next
                # Converged, or stalled at the Fock build's numerical noise floor (grid, screening).
                if err <= tol or (nit > 2 and err > 0.5 * prev_err and err <= icfg.sc_noise_floor):
                    break
                prev_err = err
            else:
                mon._fail(k, times[k], f"Magnus self-consistency did not reach {tol:.1e} in {nit} iterations "
                                       f"(last change {err:.1e})")
        builds += nit
        iters.append(nit)
        g_prev, p_prev, p, f = g, p, p_next, f_next

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
