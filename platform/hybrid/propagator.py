"""Hybrid RT-TDDFT: a surrogate ensemble propagates ρ(t), the reference engine re-anchors it when a check trips.

One run, frame by frame on the engine's grid (Magnus-2, dt of the engine config):

1. SCF ground state; ``warmup_steps`` reference steps (the models' context).
2. Surrogate segment: every member of the ensemble steps its own state (models stepped in lockstep, one molecule
   each; the primary member 0 is the output). After each step: trace, Hermiticity and idempotency of the primary
   state and the ensemble's dipole spread are checked against :class:`HybridConfig`; before each step the count of
   consecutive surrogate steps against ``max_model_steps`` / ``reference_every``.
3. A trip hands over to the reference engine (:class:`rtml.datasets.engine.stepper.ReferenceStepper`) from the last
   frame that passed (the tripping frame is discarded) for ``anchor_steps`` steps; then every member restarts from
   the reference state, its recurrent state re-warmed teacher-forced on the reference frames it has not seen.

Consecutive reference segments continue one stepper, so a run whose surrogate never steps (``max_model_steps=0``)
is the reference engine exactly. Energies are computed on reference frames only (NaN on surrogate frames: a Fock
build per frame is the cost the surrogate avoids). Ensemble members must have ``bundle == 1``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from rtml.datasets.engine.device import make_system
from rtml.datasets.engine.run import EngineConfig
from rtml.datasets.engine.stepper import ReferenceStepper
from rtml.datasets.engine.system import ElectronicSystem
from rtml.datasets.errors import PropagationError
from rtml.datasets.fields import FieldSpec
from rtml.datasets.kohn_sham import kohn_sham_terms, static_of
from rtml.datasets.molecules import Molecule
from rtml.datasets.trajectory import Trajectory
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.platform.hybrid.config import HybridConfig
from rtml.platform.modelio import ModelFileError


@dataclass
class HybridResult:
    trajectory: Trajectory  # the engine's format: density, field, dipole; energy NaN on surrogate frames
    by_reference: np.ndarray  # [T] bool, frame computed by the reference engine
    dipole_spread: np.ndarray  # [T] e·bohr, ensemble std of μ (norm); NaN on reference frames
    density_spread: np.ndarray  # [T] max|ρ_m − ρ̄| (AO); NaN on reference frames
    triggers: list  # [{"step", "reason", "value", "threshold"}]
    wall: dict  # seconds: setup (SCF, exact terms), model, reference

    @property
    def reference_fraction(self) -> float:
        """Fraction of the propagated steps (frames after t = 0) done by the reference engine."""
        return float(self.by_reference[1:].mean()) if len(self.by_reference) > 1 else 1.0


def check_models(models: list, engine: EngineConfig, source: str = "<models>"):
    """Reject ensembles the hybrid cannot run: bundles > 1, or a functional/basis/dt the models
    were not trained on (from ``model.rtml_meta['data']``, written by ``rtml train``). Raises
    :class:`rtml.platform.modelio.ModelFileError` (a ValueError the CLI prints in one line)."""
    if not models:
        raise ModelFileError(f"{source}: expected at least one model")
    for m in models:
        if m.cfg.bundle != 1:
            raise ModelFileError(f"{source}: field 'model.bundle': expected 1 (rtml propagate steps frame by frame), "
                             f"got {m.cfg.bundle}")
        if getattr(m.cfg, "stride", 1) != 1:  # its step is stride × dt: stepping it at dt would be silently wrong
            raise ModelFileError(f"{source}: field 'model.stride': expected 1 (the hybrid propagator hands frames between "
                             f"the model and the engine at the engine's dt), got {m.cfg.stride}: evaluate strided "
                             "models with `rtml evaluate` / benchmarks/large_steps.py")
        if getattr(m, "field_nodes", False):
            raise ModelFileError(f"{source}: field 'model.linear_response': expected 'magnus' (the hybrid propagator "
                             f"feeds the model step-midpoint fields), got {m.cfg.linear_response!r}: evaluate it "
                             "with `rtml evaluate` / benchmarks/large_steps.py")
        data = (getattr(m, "rtml_meta", None) or {}).get("data") or {}
        sys_ = engine.system
        if data.get("functionals") and sys_.xc.upper() not in {f.upper() for f in data["functionals"]}:
            raise ModelFileError(f"{source}: the model was trained on functional(s) {data['functionals']}, not "
                             f"{sys_.xc!r}: its learned xc potential is another functional's (pass --xc "
                             f"{data['functionals'][0]!r} or train on {sys_.xc!r} data)")
        if data.get("bases") and sys_.basis.lower() not in {b.lower() for b in data["bases"]}:
            raise ModelFileError(f"{source}: the model was trained in basis set(s) {data['bases']}, not "
                             f"{sys_.basis!r} (pass --basis {data['bases'][0]!r})")
        if data.get("dt") and not any(abs(engine.integrator.dt - d) < 1e-12 for d in data["dt"]):
            raise ModelFileError(f"{source}: the model was trained at dt {data['dt']} a.u., not "
                             f"{engine.integrator.dt} (pass --dt {data['dt'][0]})")


def ground_state_trajectory(sysm: ElectronicSystem, p_ao: np.ndarray, field0: np.ndarray, dt: float) -> Trajectory:
    """The SCF ground state as a one-frame :class:`Trajectory` (what the surrogate's exact terms are built from)."""
    mol = sysm.molecule
    vhf = sysm.veff(p_ao)
    return Trajectory(molecule=mol.name, atomic_numbers=mol.atomic_numbers, positions=np.asarray(mol.positions),
                      charge=mol.charge, multiplicity=mol.multiplicity, n_electrons=mol.n_electrons,
                      basis_name=sysm.cfg.basis, functional=sysm.cfg.xc, dt=dt, basis=sysm.basis,
                      overlap=sysm.overlap, core_hamiltonian=sysm.hcore, density=p_ao[None],
                      field=np.asarray(field0, np.float64)[None], time=np.zeros(1),
                      energy=np.array([sysm.energy(p_ao, vhf)]), dipole=sysm.dipole(p_ao)[None])


class _Member:
    """One ensemble model with its per-trajectory constants, recurrent state and own current/previous state."""

    def __init__(self, model, mol: MoleculeBatch, rho0: torch.Tensor):
        self.model = model
        self.st = model.prepare(mol, rho0)
        self.state = model.init_state(self.st)
        self.cur = self.prev = None  # [1, 2, N, N] Löwdin, the state dtype

    def orth(self, p_ao: np.ndarray) -> torch.Tensor:
        return self.model.to_orth(self.st, spin_resolved(torch.from_numpy(p_ao))[None])

    def feed(self, cur_o, prev_o, e_mid, dt):
        """One model call; returns the predicted next state [1, 2, N, N] (Löwdin)."""
        drho = torch.zeros_like(cur_o) if prev_o is None else cur_o - prev_o
        e_mid = e_mid.to(torch.float64)
        nxt, self.state = self.model.step(self.st, self.state, cur_o, drho, e_mid, dt)
        return nxt[-1]


@torch.no_grad()
def propagate_hybrid(models: list, molecule: Molecule, field_spec: FieldSpec, engine: EngineConfig,
                     cfg: HybridConfig | None = None, progress: bool = False,
                     scf_guess: np.ndarray | None = None) -> HybridResult:
    """Propagate ``engine.n_steps`` frames (t = 0 included) from the SCF ground state; see the module docstring.
    ``scf_guess``: an AO density the SCF starts from (e.g. a converged PySCF mean-field object's; default minao)."""
    cfg = cfg or HybridConfig()
    check_models(models, engine)
    icfg = engine.integrator
    if icfg.integrator != "magnus2":
        raise ValueError(f"engine.integrator: the hybrid propagator runs 'magnus2' (the surrogate's scheme), got "
                         f"{icfg.integrator!r}")
    t0 = time.perf_counter()
    sysm = make_system(molecule, engine.system)
    dt, n = icfg.dt, engine.n_steps
    times = dt * np.arange(n + 1)  # [n+1] a.u.
    e_rec = field_spec.values(times, dt)  # [n+1, 3]
    e_mid = torch.from_numpy(0.5 * (e_rec[1:] + e_rec[:-1]))  # [n, 3] float64 midpoint fields
    p_gs_ao = sysm.ground_state(scf_guess)  # [S, N, N] complex128
    p_gs = sysm.to_orth(p_gs_ao)
    gs = ground_state_trajectory(sysm, p_gs_ao, e_rec[0], dt)
    terms = kohn_sham_terms(static_of(gs), p_gs_ao, source=molecule.name, sysm=sysm)  # the engine's own system
    mol = MoleculeBatch.from_trajectories([gs], dtype=torch.float32, ks_terms=[terms])
    rho0 = spin_resolved(torch.from_numpy(p_gs_ao))[None]  # [1, 2, N, N]
    members = [_Member(m, mol, rho0) for m in models]
    n_el = float(molecule.n_electrons)
    wall = {"setup": time.perf_counter() - t0, "model": 0.0, "reference": 0.0}

    S, N = sysm.n_spin, sysm.nbf
    dens = np.empty((n, S, N, N), np.complex128)
    energy, dipole = np.full(n, np.nan), np.empty((n, 3))
    by_ref = np.zeros(n, bool)
    d_spread, r_spread = np.full(n, np.nan), np.full(n, np.nan)
    triggers = []

    def fail(msg):
        raise PropagationError(f"{molecule.name}: reference engine during a re-anchor: {msg}; nothing was written")

    def record_reference(k, stepper):
        dens[k] = stepper.density_ao
        energy[k] = sysm.energy(dens[k], stepper.vhf)
        dipole[k] = sysm.dipole(dens[k])
        by_ref[k] = True

    stepper = ReferenceStepper(sysm, icfg, e_rec, p_gs, p_gs)
    record_reference(0, stepper)
    k, fed, ref_left, run_len, max_induced = 0, 0, cfg.warmup_steps, 0, 0.0
    limit = cfg.step_limit
    bar = tqdm(total=n - 1, desc=f"propagate {molecule.name}", disable=not progress, unit="step")
    while k < n - 1:
        if ref_left > 0:  # ---------------------------------------------------------------- reference engine
            ts = time.perf_counter()
            if stepper is None:
                stepper = ReferenceStepper(sysm, icfg, e_rec, sysm.to_orth(dens[k]), p_gs, k)
            stepper.step(fail)
            k += 1
            record_reference(k, stepper)
            ref_left -= 1
            wall["reference"] += time.perf_counter() - ts
            max_induced = max(max_induced, float(np.linalg.norm(dipole[k] - dipole[0])))
            bar.update(1)
            continue
        if limit is not None and run_len >= limit:  # ------------------------------- step-count anchors
            reason = "reference_every" if cfg.reference_every and limit == cfg.reference_every else "max_model_steps"
            triggers.append({"step": k, "reason": reason, "value": run_len, "threshold": limit})
            ref_left, run_len = cfg.anchor_steps, 0
            continue
        tm = time.perf_counter()  # ------------------------------------------------------------ surrogate
        if stepper is not None:  # hand over from the reference: re-warm on the frames the models have not seen
            for mb in members:
                prev = mb.orth(dens[fed - 1]) if fed > 0 else None
                for j in range(fed, k):
                    cur = mb.orth(dens[j])
                    mb.feed(cur, prev, e_mid[j].view(1, 1, 3), dt)
                    prev = cur
                mb.cur, mb.prev = mb.orth(dens[k]), prev
            stepper, fed = None, k
        for mb in members:
            nxt = mb.feed(mb.cur, mb.prev, e_mid[k].view(1, 1, 3), dt)
            mb.prev, mb.cur = mb.cur, nxt
        fed = k + 1
        checks, rho_new, mus = _checks(members, sysm, n_el)
        wall["model"] += time.perf_counter() - tm
        mu_p = mus[0]
        induced = max(max_induced, float(np.linalg.norm(mu_p - dipole[0])))
        spread = float(np.linalg.norm(mus.std(0))) if len(members) > 1 else 0.0
        checks["spread"] = spread / max(induced, cfg.spread_floor)
        tripped = [(name, val, thr) for name, val, thr in (
            ("trace", checks["trace"], cfg.max_trace_error),
            ("hermiticity", checks["hermiticity"], cfg.max_hermiticity_error),
            ("idempotency", checks["idempotency"], cfg.max_idempotency_error),
            ("spread", checks["spread"], cfg.max_spread)) if not val <= thr]
        if tripped:  # discard frame k+1: the reference takes over from frame k
            name, val, thr = tripped[0]
            triggers.append({"step": k + 1, "reason": name, "value": float(val), "threshold": thr})
            ref_left, run_len = cfg.anchor_steps, 0
            continue
        k += 1
        dens[k], dipole[k] = rho_new, mu_p
        d_spread[k], r_spread[k] = spread, checks["density_spread"]
        max_induced, run_len = induced, run_len + 1
        bar.update(1)
    bar.close()
    wall["total"] = time.perf_counter() - t0
    n_ref = int(by_ref[1:].sum())
    meta = {"source": "rtml-hybrid", "field_spec": field_spec.to_dict(), "system": asdict(engine.system),
            "integrator": asdict(icfg), "hybrid": asdict(cfg), "ensemble_size": len(models),
            "models": [str((getattr(m, "rtml_meta", None) or {}).get("path", "")) for m in models],
            "triggers": triggers, "reference_steps": n_ref, "model_steps": n - 1 - n_ref,
            "reference_fraction": n_ref / max(n - 1, 1), "wall_seconds": wall, "scf_cycles": sysm.scf_cycles,
            "ms_per_step": 1e3 * (wall["model"] + wall["reference"]) / max(n - 1, 1),
            "energy_definition": "E[P(t)] on reference frames; NaN on surrogate frames (not computed)",
            "gauge_origin_bohr": [0.0, 0.0, 0.0]}
    traj = Trajectory(molecule=molecule.name, atomic_numbers=molecule.atomic_numbers,
                      positions=np.asarray(molecule.positions, np.float64).copy(), charge=molecule.charge,
                      multiplicity=molecule.multiplicity, n_electrons=molecule.n_electrons,
                      basis_name=engine.system.basis, functional=engine.system.xc, dt=dt, basis=sysm.basis,
                      overlap=sysm.overlap, core_hamiltonian=sysm.hcore, density=dens, field=e_rec[:n],
                      time=times[:n], energy=energy, dipole=dipole, meta=meta)
    return HybridResult(trajectory=traj, by_reference=by_ref, dipole_spread=d_spread, density_spread=r_spread,
                        triggers=triggers, wall=wall)


def _checks(members: list, sysm: ElectronicSystem, n_el: float):
    """Validity of the primary state, the AO density of the primary (store layout) and every member's dipole."""
    p = members[0].cur[0]  # [2, N, N] Löwdin
    checks = {"trace": abs(float(torch.diagonal(p, dim1=-2, dim2=-1).sum().real) - n_el),
              "hermiticity": float((p - p.mH).abs().max()),
              "idempotency": float((p @ p - p).abs().max())}
    aos = [mb.model.from_orth(mb.st, mb.cur)[0].numpy() for mb in members]  # each [2, N, N] AO
    mus = np.stack([sysm.dipole(a) for a in aos])  # [M, 3]
    mean = np.mean(aos, axis=0)
    checks["density_spread"] = float(np.max(np.abs(np.stack(aos) - mean))) if len(aos) > 1 else 0.0
    rho = aos[0].sum(0, keepdims=True) if sysm.n_spin == 1 else aos[0]
    return checks, rho, mus
