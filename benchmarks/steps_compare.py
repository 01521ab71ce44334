"""A model at the data's step and at k·dt, side by side with the physics at both (issue 26), from two regime runs.

Reads the ``regimes.json`` of two ``benchmarks/regimes.py`` runs on the same held-out store — one with a model at
stride 1 (its baselines are the physics at dt), one with the same model at stride k (baselines at k·dt, among them
linear xc and the grid LDA with the exact linear response) — and writes per molecule and field tier the dipole
nRMSE of each (against the reference on its own grid), the kicked trajectories' largest peak shift, and the cost
per simulated a.u. at batch 1 and batched, with the ratios the issue asks for: model at k / model at 1, model at k /
linear xc at dt (its best setting), reference engine / model at k. Costs of the physics come from the run at k
(measured side by side with the model there); the model at dt's from its own run.

    python benchmarks/steps_compare.py --fine runs/regimes/local/regimes.json \
        --coarse runs/regimes/local8zero/regimes.json --out runs/regimes/steps_compare.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TIERS = ("weak", "moderate", "strong")


def _load(path: str) -> tuple[str, list[dict], dict]:
    d = json.loads(Path(path).read_text())
    (label, rows), = d["per_trajectory"].items()  # one model per run
    return label, rows, d.get("costs", {})


def _mean(rows: list[dict], who: str, metric: str) -> float | None:
    vals = [r[who][metric] for r in rows if who in r and r[who].get(metric) is not None]
    return float(np.mean(vals)) if vals else None


def _fmt(v, ratio=False) -> str:
    return "—" if v is None else (f"{v:.2f}×" if ratio else f"{v:.3g}")


def accuracy_table(fine: list[dict], coarse: list[dict], metric: str = "dipole_nrmse") -> list[str]:
    by_id = {r["id"]: r for r in coarse}
    pairs = [(r, by_id[r["id"]]) for r in fine if r["id"] in by_id]
    cols = [("linear xc, dt", 0, "linear_xc"), ("LDA grid, dt", 0, "grid_xc"), ("rtml, dt", 0, "model"),
            ("linear xc, k·dt", 1, "linear_xc"), ("linear xc exact LR, k·dt", 1, "linear_xc_lr"),
            ("LDA grid exact LR, k·dt", 1, "grid_xc_lr"), ("**rtml, k·dt**", 1, "model")]
    head = ["molecule", "tier", "n", *(c[0] for c in cols), "rtml k·dt / rtml dt", "rtml k·dt / linear xc dt",
            "rtml k·dt / linear xc exact LR k·dt"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    molecules = sorted({r["molecule"] for r, _ in pairs})
    for mol in [*molecules, "all"]:
        for tier in TIERS:
            sel = [p for p in pairs if (mol == "all" or p[0]["molecule"] == mol) and p[0]["tier"] == tier]
            if not sel:
                continue
            vals = [_mean([p[i] for p in sel], who, metric) for _, i, who in cols]
            f1, lin, lr, fk = vals[2], vals[0], vals[4], vals[6]
            ratios = [None if a is None or not b else a / b for a, b in ((fk, f1), (fk, lin), (fk, lr))]
            name = f"**{mol}**" if mol == "all" else mol
            out.append("| " + " | ".join([name, tier, str(len(sel)), *(_fmt(v) for v in vals),
                                         *(_fmt(v, True) for v in ratios)]) + " |")
    return out


def kicks_table(fine: list[dict], coarse: list[dict]) -> list[str]:
    by_id = {r["id"]: r for r in coarse}
    out = ["| kick | rtml, dt: nRMSE / peak eV | rtml, k·dt | linear xc exact LR, k·dt | LDA grid exact LR, k·dt |",
           "|---|---|---|---|---|"]
    for r in fine:
        c = by_id.get(r["id"])
        if c is None or "kick" not in r["id"]:
            continue

        def cell(x, who):
            m = x.get(who)
            return "—" if m is None else f"{m['dipole_nrmse']:.3g} / {m.get('max_peak_shift_ev', float('nan')):.3g}"

        out.append(f"| {r['id']} | {cell(r, 'model')} | {cell(c, 'model')} | {cell(c, 'linear_xc_lr')} | "
                   f"{cell(c, 'grid_xc_lr')} |")
    return out


def cost_table(fine_costs: dict, coarse_costs: dict, label_fine: str, label_coarse: str, k: int) -> list[str]:
    out = ["| molecule | batch | reference engine | linear xc, dt | rtml, dt | linear xc exact LR, k·dt | "
           "LDA grid exact LR, k·dt | **rtml, k·dt** | rtml k·dt / linear xc dt | reference / rtml k·dt |",
           "|" + "---|" * 10]
    for mol, fc in fine_costs.items():
        cc = coarse_costs.get(mol, {})
        for b in sorted({int(key.split("@")[1].split("/")[0]) for key in cc if "@" in key}):
            def get(d, name):
                return d.get(f"{name}@{b}/ms_per_au")

            # the physics at dt from the same run (process, machine state) as the model at k·dt
            ref = cc.get("reference_engine/ms_per_au", fc.get("reference_engine/ms_per_au")) if b == 1 else None
            lin, mk = get(cc, "linear_xc") or get(fc, "linear_xc"), get(cc, f"model:{label_coarse}")
            vals = [ref, lin, get(fc, f"model:{label_fine}"), get(cc, f"linear_xc_lr:k{k}"),
                    get(cc, f"grid_xc_lr:k{k}"), mk]
            ratios = [None if mk is None or not lin else mk / lin, None if mk is None or ref is None else ref / mk]
            out.append("| " + " | ".join([mol, str(b), *(_fmt(v) for v in vals), _fmt(ratios[0], True),
                                         _fmt(ratios[1], True)]) + " |")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fine", required=True, help="regimes.json of the model at stride 1")
    p.add_argument("--coarse", required=True, help="regimes.json of the model at stride k")
    p.add_argument("--costs", default=None, help="take the costs from this regimes.json instead (a run with "
                   "--costs-only, e.g. measured alone with more repeats)")
    p.add_argument("--out", default=None, help="also write the tables here (markdown)")
    a = p.parse_args(argv)
    lf, fine, fc = _load(a.fine)
    lc, coarse, cc = _load(a.coarse)
    if a.costs:
        cc = json.loads(Path(a.costs).read_text())["costs"]
    k = next((int(key.split(":k")[1].split("@")[0]) for c in cc.values() for key in c if key.startswith("linear_xc_lr:k")),
             None)
    if k is None:
        raise SystemExit(f"{a.coarse}: no 'linear_xc_lr:k<K>' costs — run benchmarks/regimes.py with a model of "
                         "stride > 1 and --timing-steps > 0")
    text = [f"# rtml at dt and at {k}·dt ({lf} / {lc})", "", "## dipole nRMSE (mean over trajectories)", "",
            *accuracy_table(fine, coarse), "", "## kicked trajectories: dipole nRMSE / largest peak shift (eV)", "",
            *kicks_table(fine, coarse), "", "## ms per simulated a.u. (1 thread)", "",
            *cost_table(fc, cc, lf, lc, k), ""]
    print("\n".join(text))
    if a.out:
        Path(a.out).write_text("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
