"""Checks of the reference engine against independent references (used by tests and ``rtml validate-reference``).

* :func:`peak_check` — kicked real-time spectrum vs PySCF linear-response TDDFT (``tdscf``, full TDDFT, not TDA).
* :func:`conservation_check` — trace, Hermiticity, idempotency and field-free energy drifts after a kick.
* :func:`nwchem_check` — dipole time series vs NWChem rt_tddft on the same input (where ``nwchem`` is installed).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from pyscf import lib

from rtml.datasets.engine.propagator import IntegratorConfig
from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import ElectronicSystem, SystemConfig
from rtml.datasets.fields import kick
from rtml.datasets.formats.nwchem import parse_timeseries
from rtml.datasets.molecules import CATALOG, Molecule
from rtml.datasets.observables import HARTREE_EV, absorption_spectrum, find_peaks, kick_of

DIAG = tuple(float(v) for v in np.ones(3) / np.sqrt(3))


def linear_response(mol: Molecule, basis: str, xc: str, nstates: int = 30,
                    transition_dipoles: bool = False) -> tuple[np.ndarray, ...]:
    """Excitation energies [n] (eV) and per-axis oscillator strengths [n, 3] (2 w |<0|r_i|n>|^2) from tdscf;
    with ``transition_dipoles`` also <0|r|n> [n, 3] (a.u.)."""
    sysm = ElectronicSystem(mol, SystemConfig(basis=basis, xc=xc))
    sysm.ground_state()
    td = sysm.mf.TDHF() if sysm.is_hf else sysm.mf.TDDFT()
    nocc = int(np.sum(np.asarray(sysm.mf.mo_occ) > 0)) if not sysm.open_shell else mol.n_electrons
    td.nstates = max(1, min(nstates, nocc * (sysm.nbf - nocc) - 1))
    with lib.with_omp_threads(1):
        td.kernel()
    e = np.asarray(td.e)
    tdm = np.asarray(td.transition_dipole())  # [n, 3]
    if transition_dipoles:
        return e * HARTREE_EV, 2 * e[:, None] * tdm**2, tdm
    return e * HARTREE_EV, 2 * e[:, None] * tdm**2


def peak_check(molecule: str = "h2", basis: str = "6-31g", xc: str = "LDA,VWN", t_total: float = 300.0,
               dt: float = 0.2, kick_amplitude: float = 1e-4, emax_ev: float = 20.0, rel_strength: float = 0.05,
               progress: bool = False) -> dict:
    """Kick along (1,1,1)/sqrt3; for each axis i, the peaks of Im alpha_ii are matched to the LR states bright
    along i (strength > rel_strength * strongest, below emax_ev). Lines closer than the spectral resolution
    (3 / t_total Ha, the Gaussian window width) are reported as unresolved and not scored."""
    mol = CATALOG[molecule]
    traj = propagate(mol, kick(kick_amplitude, DIAG),
                     EngineConfig(system=SystemConfig(basis=basis, xc=xc), integrator=IntegratorConfig(dt=dt),
                                  n_steps=round(t_total / dt) + 1), progress=progress)
    e_lr, f_lr = linear_response(mol, basis, xc)
    kappa, t_kick = kick_of(traj)
    rows = match_lr_peaks(traj.time, traj.dipole, kappa / np.sqrt(3), t_kick, e_lr, f_lr, emax_ev, rel_strength)
    res_ev = 3.0 / t_total * HARTREE_EV
    scored = [r["error_ev"] for r in rows if r["resolved"]]
    return {"molecule": molecule, "basis": basis, "xc": xc, "t_total": t_total, "dt": dt,
            "resolution_ev": res_ev, "peaks": rows, "max_error_ev": max(scored) if scored else None,
            "ms_per_step": traj.meta["ms_per_step"], "trajectory": traj}


def match_lr_peaks(time: np.ndarray, dipole: np.ndarray, kappa: float, t_kick: float, e_lr: np.ndarray,
                   f_lr: np.ndarray, emax_ev: float = 20.0, rel_strength: float = 0.05) -> list[dict]:
    """Peaks of a kicked run's Im α_ii (time [T] a.u., dipole [T, 3] e·bohr, impulse ``kappa`` a.u. per axis)
    matched to the linear-response states bright along each axis i (oscillator strength f_lr [n, 3] above
    ``rel_strength`` × the strongest, energies e_lr [n] eV below ``emax_ev``). A state with another state of
    strength > 1e-3 × the strongest closer than the resolution (3 / t_total Ha, the Gaussian window's width) is
    reported ``resolved: False``."""
    t_total = float(time[-1] - time[0])
    res_ev = 3.0 / t_total * HARTREE_EV
    omega = np.linspace(0.0, (emax_ev + 5) / HARTREE_EV, 40000)
    rows = []
    for axis in range(3):
        fa = f_lr[:, axis]
        if fa.max() <= 0:
            continue
        _, _, im_alpha = absorption_spectrum(time, dipole, kappa, direction=np.eye(3)[axis], window="gauss",
                                             omega=omega, return_alpha=True, t_kick=t_kick)
        peaks = find_peaks(omega, im_alpha, 0.02) * HARTREE_EV
        bright = np.where((fa > rel_strength * fa.max()) & (e_lr < emax_ev))[0]
        for i in bright:
            close = [j for j in np.where(fa > 1e-3 * fa.max())[0] if j != i and abs(e_lr[j] - e_lr[i]) < res_ev]
            near = int(np.argmin(np.abs(peaks - e_lr[i]))) if len(peaks) else None
            rows.append({"axis": "xyz"[axis], "lr_ev": float(e_lr[i]), "strength": float(fa[i]),
                         "rt_ev": float(peaks[near]) if near is not None else None,
                         "error_ev": float(abs(peaks[near] - e_lr[i])) if near is not None else float("inf"),
                         "resolved": not close})
    return rows


def conservation_check(molecule: str = "h2", basis: str = "6-31g", xc: str = "LDA,VWN", steps: int = 2000,
                       dt: float = 0.2, kick_amplitude: float = 1e-3, integrator: str = "magnus2") -> dict:
    """Drifts over ``steps`` steps after a kick (field off from t = dt on)."""
    mol = CATALOG[molecule]
    traj = propagate(mol, kick(kick_amplitude, DIAG), EngineConfig(
        system=SystemConfig(basis=basis, xc=xc), integrator=IntegratorConfig(dt=dt, integrator=integrator),
        n_steps=steps))
    p, s = traj.density, traj.overlap
    occ = 2.0 if traj.n_spin == 1 else 1.0
    herm = float(np.abs(p - np.conj(np.swapaxes(p, -1, -2))).max())
    trace = float(np.abs(traj.electron_count() - traj.n_electrons).max())
    idem = float(np.abs(p @ s @ p - occ * p).max())  # P S P = n P for a pure (occupied) density
    e_after = traj.energy[1:]
    return {"molecule": molecule, "basis": basis, "xc": xc, "steps": steps, "t_total": (steps - 1) * dt,
            "integrator": integrator, "trace_drift": trace, "hermiticity": herm, "idempotency": idem,
            "energy_drift_ha": float(np.abs(e_after - e_after[0]).max()), "ms_per_step": traj.meta["ms_per_step"]}


NWCHEM_XC = {"lda,vwn": "slater vwn_5", "b3lyp": "b3lyp", "pbe": "xpbe96 cpbe96", "hf": "HFexch"}


def nwchem_input(mol: Molecule, basis: str, xc: str, dt: float, tmax: float, amplitude: float, pol: str) -> str:
    atoms = "\n".join(f"  {s} {x:.10f} {y:.10f} {z:.10f}" for s, (x, y, z) in zip(mol.symbols, mol.positions))
    return f"""echo
start rtml
permanent_dir ./perm
scratch_dir ./scr
charge {mol.charge}
geometry "system" units angstrom nocenter noautoz noautosym
{atoms}
end
set geometry "system"
basis print
  * library {basis}
end
dft
  xc {NWCHEM_XC[xc.lower()]}
  mult {mol.multiplicity}
  convergence energy 1d-10 density 1d-9
  grid xfine
end
task dft energy
rt_tddft
  tmax {tmax}
  dt {dt}
  field "kick"
    type delta
    polarization {pol}
    max {amplitude}
  end
  excite "system" with "kick"
  print dipole field energy
end
task dft rt_tddft
"""


def nwchem_check(molecule: str = "h2o", basis: str = "6-31g", xc: str = "LDA,VWN", steps: int = 300,
                 dt: float = 0.2, amplitude: float = 1e-3, keep: str | None = None, grid: str = "pyscf") -> dict:
    """Run NWChem (``grid xfine``) and the engine (``grid``: its :class:`SystemConfig` grid; 'nwchem-xfine' is the
    matched one) on the same kick; compare the dipole along the kick."""
    exe = shutil.which("nwchem")
    if exe is None:
        raise FileNotFoundError("nwchem is not installed (Debian: apt-get install nwchem)")
    mol = CATALOG[molecule]
    tmax = (steps - 1) * dt
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "perm").mkdir()
        (Path(tmp) / "scr").mkdir()
        (Path(tmp) / "in.nw").write_text(nwchem_input(mol, basis, xc, dt, tmax, amplitude, "x"))
        import time

        t0 = time.perf_counter()
        out = subprocess.run([exe, "in.nw"], cwd=tmp, capture_output=True, text=True, check=False)
        wall_nw = time.perf_counter() - t0
        if keep:
            Path(keep).write_text(out.stdout)
    series = parse_timeseries(out.stdout, "nwchem stdout")
    if "Dipole moment [system]" not in series:
        raise RuntimeError(f"NWChem failed (exit {out.returncode}): {out.stdout[-2000:]}{out.stderr[-2000:]}")
    t_nw, mu_nw = series["Dipole moment [system]"]
    traj = propagate(mol, kick(amplitude, (1, 0, 0)), EngineConfig(
        system=SystemConfig(basis=basis, xc=xc, grid=grid), integrator=IntegratorConfig(dt=dt, sc_rtol=1e-8),
        n_steps=len(t_nw)))
    d_rt, d_nw = traj.dipole[:, 0] - traj.dipole[0, 0], mu_nw[:, 0] - mu_nw[0, 0]
    scale = float(np.abs(d_nw).max())
    return {"molecule": molecule, "basis": basis, "xc": xc, "steps": len(t_nw), "amplitude": amplitude,
            "max_abs_diff": float(np.abs(d_rt - d_nw).max()), "max_rel_diff": float(np.abs(d_rt - d_nw).max() / scale),
            "first10_rel_diff": float(np.abs(d_rt[:10] - d_nw[:10]).max() / np.abs(d_nw[:10]).max()),
            "nwchem_ms_per_step": 1e3 * wall_nw / max(len(t_nw) - 1, 1), "rtml_ms_per_step": traj.meta["ms_per_step"],
            "time": t_nw, "dipole_nwchem": d_nw, "dipole_rtml": d_rt}
