"""Reference propagator speed: ms per Magnus-2 step for H2, LiH, H2O, C6H6 (6-31G; LDA and B3LYP), 1 thread,
before and after the per-trajectory caches and the split complex exchange (before: ``ao_cache_mb=0``,
``complex_exchange='pyscf'``; after: the defaults — AO values on the grid cached, hybrids' V_eff built on real
arrays plus −i·K[Im P]), side by side: the ratio and the largest difference in ρ and the dipole between the two
(same settings); and NWChem 7.0.2 on the same H2O input where ``nwchem`` is installed, as ratios from this one script: first with the engine on NWChem's own grid
(``SystemConfig.grid='nwchem-xfine'``: same radial quadrature and point counts, see ``rtml.datasets.engine.system.
GRIDS``), then on the engine's default PySCF level-3 grid.

    python benchmarks/bench_engine.py [--steps 40] [--skip-c6h6] [--skip-nwchem]
"""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np

from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.fields import kick
from rtml.datasets.molecules import CATALOG
from rtml.datasets.validation import nwchem_check


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip-c6h6", action="store_true")
    ap.add_argument("--skip-nwchem", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cases = [("h2", "LDA,VWN"), ("h2", "B3LYP"), ("lih", "LDA,VWN"), ("lih", "B3LYP"), ("h2o", "LDA,VWN"),
             ("h2o", "B3LYP")] + ([] if a.skip_c6h6 else [("c6h6", "LDA,VWN"), ("c6h6", "B3LYP")])
    rows = []
    for mol, xc in cases:
        steps = a.steps if mol != "c6h6" else max(6, a.steps // 5)
        before = SystemConfig(xc=xc, ao_cache_mb=0.0, complex_exchange="pyscf")  # the engine before issue 14
        runs = {k: propagate(CATALOG[mol], kick(1e-3, (1, 1, 1)), EngineConfig(system=c, n_steps=steps))
                for k, c in (("before", before), ("after", SystemConfig(xc=xc)))}
        old, new = runs["before"], runs["after"]
        d_rho = float(np.abs(new.density - old.density).max() / np.abs(old.density).max())
        d_mu = float(np.abs(new.dipole - old.dipole).max() / np.abs(old.dipole - old.dipole[0]).max())
        rows.append({"molecule": mol, "xc": xc, "nbf": new.nbf, "steps": steps,
                     "ms_per_step_uncached": old.meta["ms_per_step"], "ms_per_step": new.meta["ms_per_step"],
                     "speedup": old.meta["ms_per_step"] / new.meta["ms_per_step"], "max_rel_density_diff": d_rho,
                     "max_rel_induced_dipole_diff": d_mu, "fock_builds_per_step": new.meta["mean_sc_iterations"]})
        print(f"{mol:5s} {xc:8s} nbf {new.nbf:3d}: {old.meta['ms_per_step']:8.1f} -> {new.meta['ms_per_step']:8.1f} "
              f"ms/step ({old.meta['ms_per_step'] / new.meta['ms_per_step']:.2f}x; "
              f"{new.meta['mean_sc_iterations']:.2f} Fock builds/step; max rel. diff rho {d_rho:.1e}, "
              f"induced dipole {d_mu:.1e})", flush=True)
    if shutil.which("nwchem") and not a.skip_nwchem:
        for xc in ("LDA,VWN", "B3LYP"):
            for grid in ("nwchem-xfine", "pyscf"):  # matched grid first: the like-for-like ratio
                r = nwchem_check("h2o", "6-31g", xc, steps=a.steps * 2, grid=grid)
                rows.append({"molecule": "h2o", "xc": xc, "rtml_grid": grid,
                             "nwchem_ms_per_step": r["nwchem_ms_per_step"], "rtml_ms_per_step": r["rtml_ms_per_step"],
                             "rtml_speedup_vs_nwchem": r["nwchem_ms_per_step"] / r["rtml_ms_per_step"],
                             "max_rel_dipole_diff": r["max_rel_diff"]})
                print(f"h2o   {xc:8s} NWChem (grid xfine, 1 rank, incl. SCF+start-up) {r['nwchem_ms_per_step']:.1f} "
                      f"ms/step vs rtml on grid '{grid}' {r['rtml_ms_per_step']:.1f} ms/step: rtml is "
                      f"{r['nwchem_ms_per_step'] / r['rtml_ms_per_step']:.2f}x; dipoles agree to {r['max_rel_diff']:.1e} "
                      f"of the induced dipole", flush=True)
    else:
        print("nwchem not installed: no NWChem comparison")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
