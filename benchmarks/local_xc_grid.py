"""Why linear xc fails in strong fields, and what a local term on a coarse grid needs (issue 24).

For each case (molecule, field) the reference engine's trajectory is rolled out by the Kohn–Sham head's integrator
(one-corrector midpoint, dt of the engine) with, as xc potential:

* ``linear``  — linear xc: V_xc[ρ(0)] + K_xc[δρ] (the engine-grid kernel);
* ``remainder@L`` — linear xc plus the exact LDA remainder v(n) − v(n0) − f(n0)δn on a level-L grid (the kernel
  stays the engine grid's): a nonlinear correction on other points than the kernel's;
* ``grid@L`` — the whole local term on one level-L grid, v(n) − v(n0) (:class:`rtml.models.baselines.GridXC`).

Dipole nRMSE against the engine and ms per step (1 thread). The grids keep every point where n0 > the floor.

    python benchmarks/local_xc_grid.py --out runs/local_xc_grid      # ~6 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.fields import FieldSpec, kick
from rtml.datasets.kohn_sham import _pad_grids, kohn_sham_terms, static_of, system_from_static
from rtml.datasets.molecules import CATALOG
from rtml.datasets.resonance import first_bright
from rtml.datasets.xc_grid import xc_grid
from rtml.models.baselines import GridXC, LinearXC
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.kohn_sham import KohnShamOperators
from rtml.models.local_xc import exact_local, grid_term
from rtml.models.rollout import rollout


class Remainder(LinearXC):
    """Linear xc (engine-grid kernel) + the exact LDA remainder on the batch's grid."""

    def potential(self, ks: KohnShamOperators):
        def rem(n, dn):
            return exact_local(ks, n) - torch.einsum("bstg,...btg->...bsg", ks.grid_kernel0, dn)
        return ks.vxc0_o, lambda r: ks.linear_xc(r) + grid_term(ks, r, rem)


def cases(steps: int) -> dict:
    """name -> (molecule, field spec, frames)."""
    out = {}
    for name, amp in (("lih", 0.06), ("h2o", 0.06)):
        w, pol = first_bright(CATALOG[name], "6-31g", "lda,vwn")
        out[f"{name} resonant {amp}"] = (name, FieldSpec(kind="gaussian", amplitude=amp, omega=w, sigma=15.0, t0=45.0,
                                                         polarization=pol), steps)
    out["h2o kick 1e-2"] = ("h2o", kick(1e-2, (1.0, 1.0, 1.0)), 2 * steps)
    return out


def dipole_nrmse(traj, mol: MoleculeBatch, states: torch.Tensor) -> float:
    ref = spin_resolved(torch.from_numpy(traj.density)).sum(1)  # [T, N, N]
    r = mol.ks.r_ints[0].to(ref.dtype)
    mu_ref = -torch.einsum("xij,tji->tx", r, ref).real[1:]  # [T-1, 3]
    mu = -torch.einsum("xij,tji->tx", r, states[0].sum(1)).real
    swing = mu_ref - mu_ref[0]
    return float((mu - mu_ref).square().mean().sqrt() / swing.square().mean().sqrt())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400, help="frames of the pulses (kicks: twice)")
    p.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2], help="PySCF grid levels of the local term")
    p.add_argument("--floors", type=float, nargs="+", default=[1e-10, 1e-6], help="density floors (e/bohr³)")
    p.add_argument("--out", default="runs/local_xc_grid")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for label, (name, spec, n) in cases(a.steps).items():
        traj = propagate(CATALOG[name], spec, EngineConfig(n_steps=n))
        sysm = system_from_static(static_of(traj))
        terms = kohn_sham_terms(static_of(traj), traj.density[0], sysm=sysm, with_grid=False)
        rho0 = spin_resolved(torch.from_numpy(traj.density[0]))[None]
        field = torch.from_numpy(traj.field)[None]
        runs = [("linear", None, None, LinearXC())]
        runs += [(f"{kind}@{lv}", lv, fl, cls()) for lv in a.levels for fl in a.floors
                 for kind, cls in (("remainder", Remainder), ("grid", GridXC)) if kind == "remainder" or fl == a.floors[0]]
        for who, level, floor, model in runs:
            mol = MoleculeBatch.from_trajectories([traj], ks_terms=[terms])
            size = None
            if level is not None:
                g = xc_grid(sysm, traj.density[0], level=level, floor=floor)
                _pad_grids(mol.ks, [g], mol.nbf)
                size = g.size
            t0 = time.perf_counter()
            with torch.no_grad():
                res = rollout(model, mol, rho0, field, n_steps=n - 1, dt=traj.dt, store_every=1)
            ms = 1e3 * (time.perf_counter() - t0) / (n - 1)
            row = {"case": label, "xc": who, "floor": floor, "points": size, "dipole_nrmse": dipole_nrmse(traj, mol, res.states),
                   "ms_per_step": ms}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "local_xc_grid.json").write_text(json.dumps(rows, indent=1))
    lines = ["| case | xc | floor | grid points | dipole nRMSE | ms/step |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['xc']} | {r['floor'] or ''} | {r['points'] or ''} | {r['dipole_nrmse']:.3g} | "
                     f"{r['ms_per_step']:.1f} |")
    (out / "local_xc_grid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
