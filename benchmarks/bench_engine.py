"""Reference propagator speed: ms per Magnus-2 step for H2, LiH, H2O (6-31G; LDA and B3LYP) and C6H6 (6-31G, LDA),
and NWChem 7.0.2 on the same H2O input where ``nwchem`` is installed, as ratios from this one script.

    python benchmarks/bench_engine.py [--steps 40] [--skip-c6h6]
"""

from __future__ import annotations

import argparse
import json
import shutil

from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.fields import kick
from rtml.datasets.molecules import CATALOG
from rtml.datasets.validation import nwchem_check


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip-c6h6", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cases = [("h2", "LDA,VWN"), ("h2", "B3LYP"), ("lih", "LDA,VWN"), ("lih", "B3LYP"), ("h2o", "LDA,VWN"),
             ("h2o", "B3LYP")] + ([] if a.skip_c6h6 else [("c6h6", "LDA,VWN")])
    rows = []
    for mol, xc in cases:
        steps = a.steps if mol != "c6h6" else max(6, a.steps // 5)
        tr = propagate(CATALOG[mol], kick(1e-3, (1, 1, 1)), EngineConfig(system=SystemConfig(xc=xc), n_steps=steps))
        rows.append({"molecule": mol, "xc": xc, "nbf": tr.nbf, "steps": steps, "ms_per_step": tr.meta["ms_per_step"],
                     "fock_builds_per_step": tr.meta["mean_sc_iterations"]})
        print(f"{mol:5s} {xc:8s} nbf {tr.nbf:3d}: {tr.meta['ms_per_step']:8.1f} ms/step "
              f"({tr.meta['mean_sc_iterations']:.2f} Fock builds/step)", flush=True)
    if shutil.which("nwchem"):
        for xc in ("LDA,VWN", "B3LYP"):
            r = nwchem_check("h2o", "6-31g", xc, steps=a.steps * 2)
            rows.append({"molecule": "h2o", "xc": xc, "nwchem_ms_per_step": r["nwchem_ms_per_step"],
                         "rtml_ms_per_step": r["rtml_ms_per_step"],
                         "rtml_speedup_vs_nwchem": r["nwchem_ms_per_step"] / r["rtml_ms_per_step"],
                         "max_rel_dipole_diff": r["max_rel_diff"]})
            print(f"h2o   {xc:8s} NWChem (xfine grid, 1 rank, incl. SCF+startup) {r['nwchem_ms_per_step']:.1f} "
                  f"ms/step vs rtml {r['rtml_ms_per_step']:.1f} ms/step: rtml is "
                  f"{r['nwchem_ms_per_step'] / r['rtml_ms_per_step']:.2f}x; dipoles agree to {r['max_rel_diff']:.1e}")
    else:
        print("nwchem not installed: no NWChem comparison")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
