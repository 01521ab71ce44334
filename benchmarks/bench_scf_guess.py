"""SCF warm start: iterations and wall time with a rotated neighbour density vs PySCF's default ``minao`` guess.

For each molecule, ``--n-known`` geometries (seed ``--known-seed``, or the frame-0 densities of a Zarr store with
``--store``) are the known ground states; ``--n-test`` other geometries (seed ``--seed``) are solved twice with the
engine's SCF settings (:class:`SystemConfig`: LDA,VWN/6-31G, conv_tol 1e-11, conv_tol_grad 1e-8): from ``minao``
and from :func:`rtml.platform.hybrid.warm_start.rotated_guess`. Reported per molecule: mean iterations of each,
their ratio ("relative SCF iterations"), the wall-time ratio including building the guess, and the largest energy
difference between the two solutions (both must reach the same ground state).

    python benchmarks/bench_scf_guess.py [--molecules h2o lih nh3] [--n-known 8] [--n-test 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rtml.datasets.basis import basis_info_from_mol
from rtml.datasets.engine.system import ElectronicSystem, SystemConfig
from rtml.datasets.molecules import CATALOG, sample_geometry
from rtml.platform.hybrid.warm_start import KnownDensity, known_densities, rotated_guess


def _solve(geom, cfg, guess=None):
    sysm = ElectronicSystem(geom, cfg)
    t0 = time.perf_counter()
    p = sysm.ground_state(guess)
    wall = time.perf_counter() - t0
    return sysm, p, wall


def run(molecules, n_known, n_test, seed, known_seed, store=None, cfg=None) -> list[dict]:
    cfg = cfg or SystemConfig()
    rows = []
    for name in molecules:
        mol = CATALOG[name]
        if store:
            known = known_densities(store, name)
        else:
            known = []
            for k in range(n_known):
                g = sample_geometry(mol, k, known_seed)
                sysm, p, _ = _solve(g, cfg)
                info = basis_info_from_mol(sysm.mol)
                first = np.r_[0, np.flatnonzero(np.diff(info.shell_index)) + 1]
                known.append(KnownDensity(molecule=g, density=p, shell_l=info.l[first]))
        it_min, it_warm, t_min, t_warm, d_e, rmsds = [], [], [], [], [], []
        for k in range(1, n_test + 1):
            g = sample_geometry(mol, k, seed)
            s_cold, p_cold, w_cold = _solve(g, cfg)
            t0 = time.perf_counter()
            guess, rmsd = rotated_guess(g, known)
            t_guess = time.perf_counter() - t0
            s_warm, p_warm, w_warm = _solve(g, cfg, guess)
            e = [s.energy(p, s.veff(p)) for s, p in ((s_cold, p_cold), (s_warm, p_warm))]
            it_min.append(s_cold.scf_cycles)
            it_warm.append(s_warm.scf_cycles)
            t_min.append(w_cold)
            t_warm.append(w_warm + t_guess)
            d_e.append(abs(e[0] - e[1]))
            rmsds.append(rmsd)
        rows.append({"molecule": name, "known": len(known), "tested": n_test,
                     "iterations_minao": float(np.mean(it_min)), "iterations_warm": float(np.mean(it_warm)),
                     "relative_iterations": float(np.sum(it_warm) / np.sum(it_min)),
                     "relative_wall": float(np.sum(t_warm) / np.sum(t_min)),
                     "neighbour_rmsd_angstrom": float(np.mean(rmsds)), "max_energy_difference": float(max(d_e))})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--molecules", nargs="+", default=["h2o", "lih", "nh3"])
    p.add_argument("--n-known", type=int, default=8)
    p.add_argument("--n-test", type=int, default=5)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--known-seed", type=int, default=0)
    p.add_argument("--store", default=None, help="use the frame-0 densities of this Zarr store as the known set")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    rows = run(a.molecules, a.n_known, a.n_test, a.seed, a.known_seed, a.store)
    print(f"{'molecule':<9}{'known':>6}{'minao it':>10}{'warm it':>9}{'rel. it':>9}{'rel. wall':>10}"
          f"{'RMSD Å':>9}{'max |ΔE| Ha':>13}")
    for r in rows:
        print(f"{r['molecule']:<9}{r['known']:>6}{r['iterations_minao']:>10.1f}{r['iterations_warm']:>9.1f}"
              f"{r['relative_iterations']:>9.2f}{r['relative_wall']:>10.2f}{r['neighbour_rmsd_angstrom']:>9.3f}"
              f"{r['max_energy_difference']:>13.1e}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
