"""Side-by-side held-out table of several trained runs and the physics baselines, as Markdown (docs/heldout_and_regimes.md's tables).

Reads each run directory's ``summary.json`` (written by ``rtml train`` at the end: per-trajectory rollout metrics of
the model and of the frozen-xc, linear-xc and trivial baselines on the same held-out trajectories) and prints the
aggregate table (mean over trajectories; the largest peak shift) and the per-trajectory dipole nRMSE.

    python benchmarks/heldout_table.py runs/cmp-linear:rtml runs/cmp-markov:"Mamba off" runs/cmp-frozen:"frozen anchor"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BASELINES = (("frozen_xc", "frozen xc"), ("linear_xc", "linear xc"), ("trivial", "trivial ρ(t)=ρ(t0)"))
ROWS = (("dipole_nrmse", "dipole nRMSE", np.mean), ("scaled_l2", "scaled L2 of ρ", np.mean),
        ("spectrum_overlap", "spectrum overlap (< 20 eV, kicks)", np.mean),
        ("spectrum_nrmse", "spectrum nRMSE (kicks)", np.mean),
        ("max_peak_shift_ev", "largest peak shift, eV (kicks)", np.max),
        ("steps_to_violation", "steps before a violation > 1e-3 (min)", np.min),
        ("ms_per_step", "ms per trajectory-step (evaluation, batched)", np.mean))


def _fmt(v) -> str:
    if v is None:
        return "—"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="RUN_DIR[:label] (a directory with summary.json)")
    a = ap.parse_args()
    cols = []  # (label, per-trajectory dicts of that predictor)
    first = None
    for spec in a.runs:
        path, _, label = spec.partition(":")
        summ = json.loads((Path(path) / "summary.json").read_text())
        per = {r["id"]: r for r in summ["per_trajectory"]}
        first = first or per
        if set(per) != set(first):
            raise SystemExit(f"{path}: held-out trajectories differ from the first run's")
        cols.append((label or Path(path).name, {i: r["model"] for i, r in per.items()}))
    for who, label in BASELINES:
        cols.append((label, {i: r[who] for i, r in first.items() if who in r}))
    ids = list(first)
    print("| held-out, " + f"{len(ids)} trajectories | " + " | ".join(c[0] for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for key, name, red in ROWS:
        cells = []
        for _, per in cols:
            vals = [per[i][key] for i in ids if i in per and key in per[i]]
            cells.append(_fmt(float(red(vals))) if vals else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print("| dipole nRMSE per trajectory | " + " | ".join(c[0] for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for i in sorted(ids, key=lambda x: (x.split("-")[-1].rstrip("0123456789"), x)):
        extra = ""
        if "max_peak_shift_ev" in cols[0][1].get(i, {}):
            extra = f" (peak shift {cols[0][1][i]['max_peak_shift_ev']:.4f} eV)"
        print(f"| {i}{extra} | " + " | ".join(_fmt(per.get(i, {}).get("dipole_nrmse")) for _, per in cols) + " |")


if __name__ == "__main__":
    main()
