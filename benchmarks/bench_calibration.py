"""Is the ensemble spread a usable error signal? Spread vs actual error of pure ensemble rollouts on held-out data.

For every trajectory of a held-out store the ensemble rolls out from the SCF ground state with every re-anchoring
trigger off (:func:`propagate_hybrid`, thresholds at infinity, no step limit), driven by the trajectory's field.
Per step: the error e(t) = |μ_primary(t) − μ_ref(t)| and the spread s(t) = |std over members of μ(t)|, both
relative to the largest induced reference dipole max|μ_ref − μ_ref(0)| (the scale the hybrid's ``max_spread`` uses).
Reported per trajectory and pooled: Spearman rank correlation of s and e; for an error threshold ``--error``
(relative, default 0.1), the fraction of steps over it that the spread flags at ``HybridConfig.max_spread``
(recall), the fraction of flagged steps that are over it (precision), and the first step of each.

    python benchmarks/bench_calibration.py --models runs/ens0 runs/ens1 runs/ens2 --store runs/data/heldout.zarr \
        [--error 0.1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from rtml.datasets.engine.propagator import IntegratorConfig
from rtml.datasets.engine.run import EngineConfig
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.platform.hybrid.api import load_models
from rtml.platform.hybrid.config import HybridConfig
from rtml.platform.hybrid.inputs import case_from_trajectory
from rtml.platform.hybrid.propagator import propagate_hybrid

OFF = HybridConfig(max_spread=1e30, max_trace_error=1e30, max_hermiticity_error=1e30, max_idempotency_error=1e30,
                   max_model_steps=None)


def calibrate(models: list, traj, error_threshold: float, spread_threshold: float) -> dict:
    case = case_from_trajectory(traj)
    engine = EngineConfig(system=replace(SystemConfig(), basis=case["basis"], xc=case["xc"]),
                          integrator=replace(IntegratorConfig(), dt=case["dt"]), n_steps=case["n_steps"])
    res = propagate_hybrid(models, case["molecule"], case["field"], engine, OFF)
    mu, mu_ref = res.trajectory.dipole, traj.dipole  # [T, 3]
    scale = float(np.linalg.norm(mu_ref - mu_ref[0], axis=1).max())
    live = ~res.by_reference
    err = np.linalg.norm(mu - mu_ref, axis=1)[live] / scale  # [n] relative
    spread = res.dipole_spread[live] / scale
    bad, flagged = err > error_threshold, spread > spread_threshold
    first = lambda m: int(np.flatnonzero(m)[0]) if m.any() else None
    return {"id": traj.meta.get("id", traj.molecule), "molecule": traj.molecule,
            "field": traj.meta["field_spec"].get("label") or traj.meta["field_spec"]["kind"], "steps": int(live.sum()),
            "spearman": float(spearmanr(spread, err).statistic), "final_error": float(err[-1]),
            "max_error": float(err.max()), "max_spread": float(spread.max()),
            "bad_fraction": float(bad.mean()), "flagged_fraction": float(flagged.mean()),
            "recall": float((bad & flagged).sum() / bad.sum()) if bad.any() else None,
            "precision": float((bad & flagged).sum() / flagged.sum()) if flagged.any() else None,
            "first_bad_step": first(bad), "first_flag_step": first(flagged), "_err": err, "_spread": spread}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--error", type=float, default=0.1, help="relative dipole error counted as wrong")
    p.add_argument("--spread", type=float, default=HybridConfig.max_spread, help="relative spread that flags")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    models = load_models(a.models)
    st = TrajectoryStore(a.store)
    rows = []
    for tid in st.ids():
        tr = st.read(tid)
        tr.meta["id"] = tid
        rows.append(calibrate(models, tr, a.error, a.spread))
        r = rows[-1]
        print(f"{tid:<28} {r['steps']:>5} steps  spearman {r['spearman']:+.2f}  max err {r['max_error']:.3f}  "
              f"max spread {r['max_spread']:.3f}  recall {r['recall']}  precision {r['precision']}", flush=True)
    err = np.concatenate([r.pop("_err") for r in rows])
    spread = np.concatenate([r.pop("_spread") for r in rows])
    bad, flagged = err > a.error, spread > a.spread
    pooled = {"spearman": float(spearmanr(spread, err).statistic), "steps": len(err),
              "bad_fraction": float(bad.mean()), "flagged_fraction": float(flagged.mean()),
              "recall": float((bad & flagged).sum() / bad.sum()) if bad.any() else None,
              "precision": float((bad & flagged).sum() / flagged.sum()) if flagged.any() else None,
              "mean_trajectory_spearman": float(np.nanmean([r["spearman"] for r in rows]))}
    print(f"pooled over {pooled['steps']} steps: spearman {pooled['spearman']:+.2f} (mean per trajectory "
          f"{pooled['mean_trajectory_spearman']:+.2f}); error > {a.error}: {pooled['bad_fraction']:.3f} of steps, "
          f"spread > {a.spread} flags {pooled['flagged_fraction']:.3f}; recall {pooled['recall']}, precision "
          f"{pooled['precision']}")
    if a.json:
        Path(a.json).write_text(json.dumps({"pooled": pooled, "trajectories": rows,
                                            "error_threshold": a.error, "spread_threshold": a.spread}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
