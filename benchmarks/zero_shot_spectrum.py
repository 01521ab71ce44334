"""Zero-shot kick spectrum of a molecule too large for the reference to run long: the model (and linear xc) rolled
out from the engine's first frames, their peaks matched to PySCF linear-response TDDFT (an independent reference).

A weak kick along (1,1,1)/√3 is linear response, so LR-TDDFT's bright states are the exact answer of the engine's
own physics; the reference engine itself would need ``t_total / dt`` steps at ~12 s each for tetracene (6.7 h for
400 a.u. here), the model and linear xc ~0.15 s.

    python benchmarks/zero_shot_spectrum.py --model runs/corpus/all/model.pt --molecule tetracene \
        --t-total 400 --out runs/zero_shot

Writes ``<out>/zero_shot.json`` (peak rows per predictor, ms per step) and ``<out>/spectrum.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.fields import kick
from rtml.datasets.integrals import dipole_integrals
from rtml.datasets.kohn_sham import kohn_sham_terms, static_of
from rtml.datasets.molecules import CATALOG
from rtml.datasets.observables import HARTREE_EV, absorption_spectrum, kick_of
from rtml.datasets.validation import DIAG, linear_response, match_lr_peaks
from rtml.models.baselines import LinearXC
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.rollout import rollout
from rtml.platform.modelio import load_model

CONTEXT = 2  # reference frames before the rollout's start (2 steps past the kick at t = dt/2)


def _rollout_dipole(model, mol: MoleculeBatch, rho: torch.Tensor, n: int, dt: float, r_ints: torch.Tensor,
                    nuc: np.ndarray) -> tuple[np.ndarray, float]:
    """rho [1, CONTEXT+1, 2, N, N] engine frames -> (dipole [n, 3] e·bohr of the rolled-out frames, ms per step);
    the states are not kept (a callback reduces each frame to its dipole)."""
    mu = np.zeros((n, 3))

    def keep(frame, ao):  # ao [1, 2, N, N]
        mu[frame - 1] = nuc - torch.einsum("xij,sji->x", r_ints, ao[0].real.to(r_ints.dtype)).numpy()  # r real: Re tr(rρ)

    field = torch.zeros(1, n + 1, 3, dtype=torch.float64)  # the kick is over by the rollout's start
    t0 = time.perf_counter()
    with torch.no_grad():
        rollout(model.eval(), mol, rho[:, -1], field, n, dt, store_every=0, context=rho[:, :-1], callback=keep,
                progress=True)
    return mu, 1e3 * (time.perf_counter() - t0) / n


def run(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    mol_spec = CATALOG[args.molecule]
    system = SystemConfig(basis=args.basis, xc=args.xc)
    traj = propagate(mol_spec, kick(args.kick, DIAG), EngineConfig(system=system, n_steps=CONTEXT + 1))
    n = round(args.t_total / traj.dt) - CONTEXT
    terms = kohn_sham_terms(static_of(traj), traj.density[0])
    mol = MoleculeBatch.from_trajectories([traj], dtype=torch.float32, ks_terms=[terms])
    rho = spin_resolved(torch.from_numpy(traj.density[:CONTEXT + 1]))[None]  # [1, C+1, 2, N, N] complex128
    r, nuc = dipole_integrals(traj)  # [3, N, N] float64, [3]: the engine's own dipole operator
    r_ints = torch.from_numpy(r)
    t = traj.time[0] + traj.dt * np.arange(CONTEXT + n + 1)
    kappa, t_kick = kick_of(traj)
    t_lr = time.perf_counter()
    e_lr, f_lr = linear_response(mol_spec, args.basis, args.xc, nstates=args.nstates)
    t_lr = time.perf_counter() - t_lr
    report = {"molecule": args.molecule, "nbf": traj.nbf, "basis": args.basis, "xc": args.xc, "kick": args.kick,
              "t_total": float(t[-1] - t[0]), "resolution_ev": 3.0 / float(t[-1] - t[0]) * HARTREE_EV,
              "reference_ms_per_step": traj.meta["ms_per_step"], "lr_tddft_s": t_lr,
              "lr_states": [{"ev": float(e), "f": [float(x) for x in f]} for e, f in zip(e_lr, f_lr)],
              "predictors": {}}
    spectra = {}
    models = {"model": load_model(args.model), "linear_xc": LinearXC()}
    for who, m in models.items():
        mu, ms = _rollout_dipole(m, mol, rho, n, float(traj.dt), r_ints, nuc)
        dip = np.concatenate([traj.dipole[:CONTEXT + 1], mu])  # [C+1+n, 3]
        rows = match_lr_peaks(t, dip, kappa / np.sqrt(3), t_kick, e_lr, f_lr, args.emax_ev)
        scored = [r["error_ev"] for r in rows if r["resolved"]]
        report["predictors"][who] = {"ms_per_step": ms, "peaks": rows,
                                     "max_error_ev": max(scored) if scored else None}
        omega, s = absorption_spectrum(t, dip, kappa, direction=np.asarray(DIAG), window="gauss",
                                       emax_ev=args.emax_ev, n_omega=4000, t_kick=t_kick)
        spectra[who] = (omega * HARTREE_EV, s)
        print(f"{who}: {ms:.1f} ms/step; worst resolved LR peak {report['predictors'][who]['max_error_ev']} eV",
              flush=True)
    (out / "zero_shot.json").write_text(json.dumps(report, indent=1))
    _plot(out / "spectrum.png", spectra, e_lr, f_lr @ np.asarray(DIAG) ** 2, report)
    return report


def _plot(path: Path, spectra: dict, e_lr, f_diag, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    for who, (ev, s) in spectra.items():
        ax.plot(ev, s, label=who, ls="-" if who == "model" else "--")
    top = max(s.max() for _, s in spectra.values())
    keep = e_lr < ev[-1]
    ax.vlines(e_lr[keep], 0, top * f_diag[keep] / max(f_diag[keep].max(), 1e-30), colors="k", lw=1,
              label="LR-TDDFT (f along the kick)")
    ax.set_xlabel("energy (eV)")
    ax.set_title(f"{report['molecule']} ({report['nbf']} functions), {report['t_total']:.0f} a.u. kick, "
                 f"resolution {report['resolution_ev']:.2f} eV", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model.pt, run directory or MLflow URI")
    p.add_argument("--molecule", default="tetracene")
    p.add_argument("--basis", default="6-31g")
    p.add_argument("--xc", default="LDA,VWN")
    p.add_argument("--kick", type=float, default=1e-3, help="kick amplitude (a.u.) along (1,1,1)/√3")
    p.add_argument("--t-total", type=float, default=400.0, help="a.u. simulated")
    p.add_argument("--nstates", type=int, default=12, help="LR-TDDFT states")
    p.add_argument("--emax-ev", type=float, default=8.0, help="peaks compared below this energy")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/zero_shot")
    run(p.parse_args())


if __name__ == "__main__":
    main()
